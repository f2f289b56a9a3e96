-- Nexmark q0, pass-through: every bid, unchanged (measures the cost of reading and writing).
CREATE STREAM nexmark_q0 AS SELECT auction, bidder, price, "dateTime", extra FROM bid;
