-- Nexmark q5, hot items: the auction with the most bids in each 10-second window sliding
-- every 2 seconds. The inner query counts bids per auction and window; the outer one
-- keeps, per window, the highest count and the auction that has it. When an auction's
-- count rises, its old count is retracted from its window, so the top stays exact.
-- (Flink's version joins the counts with their maximum and lists every auction tied at
-- the top; first_value picks one of them.)
CREATE TABLE nexmark_q5 AS
SELECT q.starttime, first_value(q.auction ORDER BY q.num DESC) AS auction, MAX(q.num) AS num
FROM (SELECT auction, hop("dateTime", INTERVAL '10' SECOND, INTERVAL '2' SECOND) AS starttime, COUNT(*) AS num
      FROM bid
      GROUP BY auction, hop("dateTime", INTERVAL '10' SECOND, INTERVAL '2' SECOND)) q
GROUP BY q.starttime;
