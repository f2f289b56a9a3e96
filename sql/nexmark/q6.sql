-- Nexmark q6, average selling price per seller: the average of the winning bids of each
-- seller's last 10 auctions (by closing time). The inner query is q4's: each auction's
-- highest bid made while it was open. The window function turns the result into a table
-- with one row per seller, valued at the seller's latest auction; when a winning bid
-- rises, the old one leaves the seller's frame.
CREATE TABLE nexmark_q6 AS
SELECT q.seller, AVG(q.final) OVER (PARTITION BY q.seller ORDER BY q.expires ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg_final
FROM (SELECT a.id, a.seller, a.expires, MAX(b.price) AS final
      FROM auction a JOIN bid b
        ON a.id = b.auction
       AND b."dateTime" BETWEEN a."dateTime" AND a.expires
       AND b."dateTime" <= a."dateTime" + INTERVAL '1' HOUR
      GROUP BY a.id, a.seller, a.expires) q;
