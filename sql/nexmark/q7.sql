-- Nexmark q7, highest bid: the top bid of each 10-second window, with who bid it, on
-- which auction and when. (Flink joins the bids back to each window's maximum price and
-- lists every bid tied at the top; first_value picks one of them.)
CREATE TABLE nexmark_q7 AS
SELECT tumble("dateTime", INTERVAL '10' SECOND) AS window_start,
       MAX(price) AS price,
       first_value(auction ORDER BY price DESC) AS auction,
       first_value(bidder ORDER BY price DESC) AS bidder,
       first_value("dateTime" ORDER BY price DESC) AS "dateTime"
FROM bid
GROUP BY tumble("dateTime", INTERVAL '10' SECOND);
