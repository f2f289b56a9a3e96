-- Nexmark sources, over the topics `samsa bench nexmark` fills (keys: person id, auction
-- id, and the auction id of a bid; record timestamps are the events' dateTime).
CREATE STREAM person (id BIGINT, name VARCHAR, "emailAddress" VARCHAR, "creditCard" VARCHAR, city VARCHAR, state VARCHAR, "dateTime" TIMESTAMP, extra VARCHAR)
  WITH (topic = 'nexmark-person', timestamp = 'dateTime');
CREATE TABLE person_by_id (id BIGINT, name VARCHAR, "emailAddress" VARCHAR, "creditCard" VARCHAR, city VARCHAR, state VARCHAR, "dateTime" TIMESTAMP, extra VARCHAR)
  PRIMARY KEY (id) WITH (topic = 'nexmark-person', timestamp = 'dateTime');
CREATE STREAM auction (id BIGINT, "itemName" VARCHAR, description VARCHAR, "initialBid" BIGINT, reserve BIGINT, "dateTime" TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR)
  WITH (topic = 'nexmark-auction', timestamp = 'dateTime');
CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, "dateTime" TIMESTAMP, extra VARCHAR)
  WITH (topic = 'nexmark-bid', timestamp = 'dateTime');
