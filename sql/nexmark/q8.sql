-- Nexmark q8, monitor new users: people who opened an auction in the same 10-second
-- window as they registered, with how many. Flink joins two windowed aggregates; here
-- the same result is a stream-stream join bounded by the window length, a same-window
-- filter, and a windowed count.
CREATE TABLE nexmark_q8 AS
SELECT p.id, p.name, tumble(p."dateTime", INTERVAL '10' SECOND) AS starttime, COUNT(*) AS auctions
FROM person p JOIN auction a
  ON p.id = a.seller
 AND a."dateTime" BETWEEN p."dateTime" - INTERVAL '10' SECOND AND p."dateTime" + INTERVAL '10' SECOND
WHERE date_bin(INTERVAL '10' SECOND, a."dateTime") = date_bin(INTERVAL '10' SECOND, p."dateTime")
GROUP BY p.id, p.name, tumble(p."dateTime", INTERVAL '10' SECOND);
