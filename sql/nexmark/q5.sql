-- Nexmark q5, hot items: bids per auction in 10-second windows sliding every 2 seconds.
-- (The full query then keeps, per window, the auctions with the most bids: an aggregation
-- over an aggregation, not supported yet; this is its first, stateful half.)
CREATE TABLE nexmark_q5 AS
SELECT auction, hop("dateTime", INTERVAL '10' SECOND, INTERVAL '2' SECOND) AS starttime, COUNT(*) AS num
FROM bid
GROUP BY auction, hop("dateTime", INTERVAL '10' SECOND, INTERVAL '2' SECOND);
