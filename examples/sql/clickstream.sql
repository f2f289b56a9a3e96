-- Clickstream sessionization with Samsa SQL.
--
-- Run against a running `samsa server` (HTTP port 8083 by default):
--   samsa sql -f examples/sql/clickstream.sql --server 127.0.0.1:8083
--   samsa sql -f examples/sql/clicks.sql --server 127.0.0.1:8083     # sample clicks
--   samsa sql -e "SELECT user_id, session_start, clicks, pages, last_click FROM user_sessions ORDER BY user_id, session_start" --server 127.0.0.1:8083
--
-- The persistent queries below run inside the server (exactly once, RocksDB state) and
-- keep their tables up to date as clicks arrive; any Kafka client can write clicks too:
--   printf 'u1:{"user_id":"u1","page":"/home","ts":"2026-03-02T13:00:00"}\n' | kcat -b 127.0.0.1:9092 -P -t clicks -K:

-- One JSON record per page view, keyed by user, timed by its `ts` field (event time).
CREATE STREAM clicks (user_id VARCHAR, page VARCHAR, ts TIMESTAMP)
  WITH (topic = 'clicks', format = 'json', key = 'user_id', timestamp = 'ts', partitions = 3);

-- The users we know: the latest row per id.
CREATE TABLE users (id VARCHAR, name VARCHAR, region VARCHAR) PRIMARY KEY (id)
  WITH (topic = 'users', format = 'json', partitions = 3);

INSERT INTO users VALUES ('u1', 'Ann', 'eu'), ('u2', 'Bob', 'us');

-- Sessions: a user's clicks with less than 30 minutes between consecutive ones form a
-- session. session_start is the first click's time; a late click that falls between two
-- sessions merges them into one (the two old rows are deleted).
CREATE TABLE user_sessions AS
  SELECT user_id,
         session(ts, INTERVAL '30' MINUTE) AS session_start,
         COUNT(*) AS clicks,
         COUNT(DISTINCT page) AS pages,
         MAX(ts) AS last_click
  FROM clicks
  GROUP BY user_id, session(ts, INTERVAL '30' MINUTE);

-- Every click with its user's name and region as the user was when the click was
-- processed (NULL for users not in the table: a LEFT JOIN).
CREATE STREAM clicks_enriched AS
  SELECT c.user_id, u.name, u.region, c.page, c.ts
  FROM clicks c LEFT JOIN users u ON c.user_id = u.id;

-- Per region: how many sessions its (known) users had, their clicks, and the longest
-- session in clicks; an aggregation over the per-session aggregation, so a merge of two
-- sessions counts one session less.
CREATE TABLE region_sessions AS
  SELECT s.region, COUNT(*) AS sessions, SUM(s.clicks) AS clicks, MAX(s.clicks) AS longest
  FROM (SELECT u.region AS region, c.user_id AS user_id,
               session(c.ts, INTERVAL '30' MINUTE) AS session_start, COUNT(*) AS clicks
        FROM clicks c JOIN users u ON c.user_id = u.id
        GROUP BY u.region, c.user_id, session(c.ts, INTERVAL '30' MINUTE)) s
  GROUP BY s.region;

SHOW QUERIES;
