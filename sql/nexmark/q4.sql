-- Nexmark q4, average closing price per category: each auction's winning bid (the highest
-- bid made while it was open), averaged per category. An aggregation over an
-- aggregation: when an auction's top bid rises, its old price leaves the average.
-- The join's bound is the auction's life, [dateTime, expires]; the second condition on
-- dateTime gives it a fixed length (an hour: the generator's auctions are far shorter),
-- so that the join's state stays finite.
CREATE TABLE nexmark_q4 AS
SELECT q.category, AVG(q.final) AS avg_final
FROM (SELECT a.id, a.category, MAX(b.price) AS final
      FROM auction a JOIN bid b
        ON a.id = b.auction
       AND b."dateTime" BETWEEN a."dateTime" AND a.expires
       AND b."dateTime" <= a."dateTime" + INTERVAL '1' HOUR
      GROUP BY a.id, a.category) q
GROUP BY q.category;
