-- Sample clicks for clickstream.sql (run that first). With a 30-minute session gap:
--   u1: 10:00, 10:05, 10:20, 10:40 (gaps under 30 min: one session of 4 clicks, 3 pages),
--       then 12:00, 12:10 (80 min later: a second session of 2 clicks);
--   u2: 10:02 and 10:50 (48 min apart: two sessions of one click each);
--   u3: 12:30 (not in the users table: NULL name in clicks_enriched, left out of
--       region_sessions).
-- Afterwards, a late click of u2 at 10:25 (23 and 25 minutes from its two clicks) merges
-- u2's two sessions into one of 3 clicks starting at 10:02:
--   INSERT INTO clicks VALUES ('u2', '/docs', TIMESTAMP '2026-03-02 10:25:00');
INSERT INTO clicks VALUES
  ('u1', '/home',     TIMESTAMP '2026-03-02 10:00:00'),
  ('u2', '/home',     TIMESTAMP '2026-03-02 10:02:00'),
  ('u1', '/products', TIMESTAMP '2026-03-02 10:05:00'),
  ('u1', '/products', TIMESTAMP '2026-03-02 10:20:00'),
  ('u1', '/checkout', TIMESTAMP '2026-03-02 10:40:00'),
  ('u2', '/pricing',  TIMESTAMP '2026-03-02 10:50:00'),
  ('u1', '/home',     TIMESTAMP '2026-03-02 12:00:00'),
  ('u1', '/about',    TIMESTAMP '2026-03-02 12:10:00'),
  ('u3', '/home',     TIMESTAMP '2026-03-02 12:30:00');
