-- Nexmark q2, selection: bids on a sample of auctions.
CREATE STREAM nexmark_q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0;
