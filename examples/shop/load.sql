-- A synthetic shop with a known signal, for recommendation tasks:
--   customers (static attributes, timed by sign-up), products (timed by launch), orders.
-- Run through load.sh (it passes the sizes). Deterministic: every random draw is a hash of
-- the ids of its row (hashint8extended, stable across PostgreSQL versions and machines),
-- so the same sizes and seed give the same rows everywhere, whatever the plan.
--
-- What drives a purchase (the signal a recommender can find):
--   1. taste: a customer's segment prefers 3 of the 20 categories (weight 3), and each
--      customer has a personal favourite category (weight 4); other categories weight 1;
--   2. season: 12 categories peak in one month of the year (weight x3 at the peak, x0.3
--      six months off), the 8 others are flat;
--   3. popularity: within a category, products are Zipf-like (the lower the index, the
--      more popular); 15% of purchases pick a product launched in the last 60 days;
--   4. complements: after buying product p, a customer buys p's complement (a fixed
--      product of another category) within 1-20 days with probability 0.3;
--   5. repeats: consumables (5 categories) are bought again 20-40 days later with
--      probability 0.6, and once more 50-75 days later with probability 0.35.
-- The hidden mechanisms (preferences, complements) are not columns; segment, category,
-- brand, price and the timestamps are.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
BEGIN;
DROP TABLE IF EXISTS orders, products, customers CASCADE;
SELECT set_config('shop.seed', :'seed', true),
       set_config('shop.customers', :'customers', true),
       set_config('shop.products', :'products', true) \gset

-- u(x, salt): a uniform draw in [0, 1) from a 64-bit hash of x.
CREATE FUNCTION pg_temp.u(x int8, salt int) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
  SELECT (hashint8extended(x, salt::int8 * 7919 + current_setting('shop.seed')::int8)
          & 9007199254740991)::float8 / 9007199254740992.0
$$;

CREATE TEMP TABLE cat (c int PRIMARY KEY, name text, peak int, consumable bool) ON COMMIT DROP;
INSERT INTO cat VALUES
  (0, 'groceries', NULL, true), (1, 'coffee & tea', NULL, true), (2, 'baby care', NULL, true),
  (3, 'pet food', NULL, true), (4, 'beauty', NULL, true), (5, 'garden', 5, false),
  (6, 'swimwear', 7, false), (7, 'camping', 6, false), (8, 'school supplies', 9, false),
  (9, 'halloween', 10, false), (10, 'toys', 12, false), (11, 'winter clothing', 1, false),
  (12, 'heating', 1, false), (13, 'fans', 7, false), (14, 'books', NULL, false),
  (15, 'electronics', 11, false), (16, 'kitchen', NULL, false), (17, 'sports', 4, false),
  (18, 'office', NULL, false), (19, 'party', 12, false);

CREATE TEMP TABLE seg (s int PRIMARY KEY, name text) ON COMMIT DROP;
INSERT INTO seg VALUES (0, 'family'), (1, 'student'), (2, 'pet owner'), (3, 'gardener'),
  (4, 'gamer'), (5, 'traveller'), (6, 'homebody'), (7, 'professional');

-- Hidden: a customer's favourite category and activity (orders per month).
CREATE TEMP TABLE cust ON COMMIT DROP AS
SELECT id,
       floor(pg_temp.u(id, 1) * 8)::int AS s,
       floor(pg_temp.u(id, 2) * 20)::int AS fav,
       0.5 + 2.5 * pg_temp.u(id, 3) ^ 2 AS rate,
       CASE WHEN pg_temp.u(id, 4) < 0.5 THEN timestamp '2023-01-01'
            ELSE timestamp '2023-01-01' + (pg_temp.u(id, 5) * 600) * interval '1 day' END AS created_at,
       (ARRAY['north', 'south', 'east', 'west', 'centre'])[1 + floor(pg_temp.u(id, 6) * 5)::int] AS region
FROM generate_series(1, current_setting('shop.customers')::int) AS id;

CREATE TABLE customers (
  customer_id int PRIMARY KEY,
  segment text NOT NULL,
  region text NOT NULL,
  created_at timestamp NOT NULL
);
INSERT INTO customers SELECT c.id, seg.name, c.region, c.created_at FROM cust c JOIN seg USING (s);

-- Products: category-major ids; per category n products, the first 80% ("core") on sale
-- from the start, the rest launched one after the other over 660 days.
CREATE TEMP TABLE prod ON COMMIT DROP AS
SELECT c * n + j + 1 AS id, c, j, n, (n * 0.8)::int AS core,
       CASE WHEN j < (n * 0.8)::int THEN timestamp '2023-01-01'
            ELSE timestamp '2023-01-01' + ceil((j - (n * 0.8)::int + 1) * 660.0 / greatest(n - (n * 0.8)::int, 1)) * interval '1 day'
       END AS created_at
FROM (SELECT greatest(current_setting('shop.products')::int / 20, 5) AS n) k,
     generate_series(0, 19) AS c, generate_series(0, k.n - 1) AS j;

CREATE TABLE products (
  product_id int PRIMARY KEY,
  name text NOT NULL,
  category text NOT NULL,
  brand text NOT NULL,
  price float8 NOT NULL,
  created_at timestamp NOT NULL
);
INSERT INTO products
SELECT p.id, 'Product ' || p.id, cat.name,
       cat.name || ' brand ' || (1 + floor(pg_temp.u(p.id, 7) * 8)::int),
       round((3 + 120 * pg_temp.u(p.id, 8) ^ 2)::numeric, 2)::float8, p.created_at
FROM prod p JOIN cat USING (c);

-- Category weights per (segment, favourite, month of the period): taste x season,
-- cumulated for an inverse-CDF draw.
CREATE TEMP TABLE cw ON COMMIT DROP AS
SELECT s, fav, m, c, sum(w) OVER (PARTITION BY s, fav, m ORDER BY c) AS cum,
       sum(w) OVER (PARTITION BY s, fav, m) AS total
FROM (
  SELECT seg.s, f.fav, mm.m, cat.c,
         (CASE WHEN cat.c = f.fav THEN 4 WHEN cat.c IN ((seg.s * 2) % 20, (seg.s * 2 + 1) % 20, (seg.s * 2 + 10) % 20) THEN 3 ELSE 1 END)
         * CASE WHEN cat.peak IS NULL THEN 1.0
                ELSE 0.3 + 2.7 * ((1 + cos(2 * pi() * (((mm.m % 12) + 1) - cat.peak) / 12.0)) / 2) ^ 3 END AS w
  FROM seg, generate_series(0, 19) AS f(fav), generate_series(0, 23) AS mm(m), cat
) x;
CREATE INDEX ON cw (s, fav, m, cum);

-- Base purchases: per customer and month since sign-up, about `rate` of them.
CREATE TEMP TABLE base ON COMMIT DROP AS
SELECT b.id, b.m, b.k, b.at, b.s, b.fav, b.r_cat, b.r_prod, b.r_new,
       (SELECT cw.c FROM cw WHERE cw.s = b.s AND cw.fav = b.fav AND cw.m = b.m AND cw.cum >= b.r_cat * cw.total
         ORDER BY cw.cum LIMIT 1) AS c
FROM (
  SELECT c.id, mm.m, k.k, c.s, c.fav,
         timestamp '2023-01-01' + mm.m * interval '1 month'
           + pg_temp.u(c.id * 100000 + mm.m * 100 + k.k, 10) * (timestamp '2023-02-01' - timestamp '2023-01-01') AS at,
         pg_temp.u(c.id * 100000 + mm.m * 100 + k.k, 11) AS r_cat,
         pg_temp.u(c.id * 100000 + mm.m * 100 + k.k, 12) AS r_prod,
         pg_temp.u(c.id * 100000 + mm.m * 100 + k.k, 13) AS r_new
  FROM cust c
  CROSS JOIN generate_series(0, 23) AS mm(m)
  CROSS JOIN LATERAL generate_series(1, floor(c.rate * 2 * pg_temp.u(c.id * 100 + mm.m, 9) + 0.5)::int) AS k(k)
) b;

-- The product: a new arrival (launched in the last 60 days) 15% of the time when there is
-- one, else a Zipf-like pick among the products on sale.
CREATE TEMP TABLE picked ON COMMIT DROP AS
SELECT b.id, b.at, b.c, b.m, b.k, p.id AS product_id
FROM base b
CROSS JOIN LATERAL (
  SELECT n, core,
         core + floor(greatest(extract(epoch FROM b.at - timestamp '2023-01-01') / 86400 - 1, 0)
                      * (n - core) / 660.0)::int AS on_sale,
         core + floor(greatest(extract(epoch FROM b.at - timestamp '2023-01-01') / 86400 - 61, 0)
                      * (n - core) / 660.0)::int AS new_from
  FROM (SELECT greatest(current_setting('shop.products')::int / 20, 5) AS n) k0,
       LATERAL (SELECT (k0.n * 0.8)::int AS core) k1
) q
CROSS JOIN LATERAL (
  SELECT CASE WHEN b.r_new < 0.15 AND least(q.on_sale, q.n) > q.new_from
              THEN q.new_from + floor(pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 14) * (least(q.on_sale, q.n) - q.new_from))::int
              ELSE floor(least(q.on_sale, q.n) * b.r_prod ^ 2.5)::int END AS j
) pick
JOIN prod p ON p.c = b.c AND p.j = least(pick.j, q.n - 1)
WHERE b.c IS NOT NULL;

CREATE TEMP TABLE all_orders ON COMMIT DROP AS
-- base purchases
SELECT id AS customer_id, product_id, at, 0 AS kind FROM picked
UNION ALL
-- complements: (c, j) -> ((c + 7) % 20, (7j + 3) % core)
SELECT b.id, p2.id, b.at + (1 + 19 * pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 16)) * interval '1 day', 1
FROM picked b JOIN prod p ON p.id = b.product_id
JOIN prod p2 ON p2.c = (p.c + 7) % 20 AND p2.j = (p.j * 7 + 3) % p.core
WHERE pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 15) < 0.3
UNION ALL
-- repeats of consumables
SELECT b.id, b.product_id, b.at + (20 + 20 * pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 18)) * interval '1 day', 2
FROM picked b JOIN cat USING (c)
WHERE cat.consumable AND pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 17) < 0.6
UNION ALL
SELECT b.id, b.product_id, b.at + (50 + 25 * pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 20)) * interval '1 day', 3
FROM picked b JOIN cat USING (c)
WHERE cat.consumable AND pg_temp.u(b.id * 100000 + b.m * 100 + b.k, 19) < 0.35;

CREATE TABLE orders (
  order_id int PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers,
  product_id int NOT NULL REFERENCES products,
  quantity int NOT NULL,
  amount float8 NOT NULL,
  ordered_at timestamp NOT NULL
);
INSERT INTO orders
SELECT row_number() OVER (ORDER BY o.at, o.customer_id, o.product_id, o.kind)::int,
       o.customer_id, o.product_id, q.quantity, round((p.price * q.quantity)::numeric, 2)::float8,
       date_trunc('second', o.at)
FROM all_orders o
JOIN customers c USING (customer_id)
JOIN products p USING (product_id)
CROSS JOIN LATERAL (SELECT 1 + floor(3 * pg_temp.u(o.customer_id::int8 * 1000003 + o.product_id * 31 + o.kind
                                                  + extract(epoch FROM o.at)::int8, 21) ^ 2)::int AS quantity) q
WHERE o.at >= c.created_at AND o.at >= p.created_at AND o.at < timestamp '2025-01-01';

CREATE INDEX orders_customer_time ON orders (customer_id, ordered_at);
CREATE INDEX orders_product_time ON orders (product_id, ordered_at);
COMMIT;
ANALYZE customers, products, orders;
