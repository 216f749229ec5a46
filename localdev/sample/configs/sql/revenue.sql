SELECT day, SUM(amount) AS revenue, COUNT(*) AS orders
FROM staging.orders_clean
GROUP BY day
