SELECT order_id, customer_id, amount, DATE(created_at) AS day
FROM raw.orders
WHERE amount IS NOT NULL
