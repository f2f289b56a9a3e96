-- Nexmark q7, highest bid: the top price of each 10-second window. (The full query joins
-- the bids back to report who bid it; that join of a stream with an aggregate is not
-- supported yet.)
CREATE TABLE nexmark_q7 AS
SELECT tumble("dateTime", INTERVAL '10' SECOND) AS window_start, MAX(price) AS maxprice, COUNT(*) AS bids
FROM bid
GROUP BY tumble("dateTime", INTERVAL '10' SECOND);
