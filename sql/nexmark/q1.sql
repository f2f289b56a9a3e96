-- Nexmark q1, currency conversion: bid prices from dollars to euros.
CREATE STREAM nexmark_q1 AS SELECT auction, bidder, 0.908 * price AS price, "dateTime", extra FROM bid;
