select day, sum(amount) as revenue
from {{ ref('orders_clean') }}
group by day
