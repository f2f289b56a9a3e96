//! `samsa bench nexmark`: the Nexmark benchmark's event generator, feeding three topics.
//!
//! ```text
//!  Generator::event(n) ──> Event::{Person, Auction, Bid} ──to_json──> Producer (acks=all,
//!  (pure: seed + event number)                                         pipelined)
//!                                     ──> {prefix}person | {prefix}auction | {prefix}bid
//! ```
//!
//! The generator follows Apache Beam's / Flink's Nexmark generator: event `n` is a person,
//! an auction or a bid by `n % 50` (1 : 3 : 46), ids count from 1000, bids go to recent
//! auctions and people with the same "hot" ratios, and event time is
//! `base + n / rate`. Each event draws from its own PRNG seeded by `(seed, n)` (as Beam
//! seeds a `Random` per event id), so event `n` is the same whatever was generated before,
//! and a run is identical to the next. Unlike Beam, ids never lead ahead of the events
//! generated so far: every bid's auction and bidder, and every auction's seller, exist
//! earlier in the sequence, so joins never miss.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samsa_client::admin::{Admin, NewTopic};
use samsa_client::error::ResponseError;
use samsa_client::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};

use crate::util::print_table;

/// Persons out of every [`TOTAL_PROPORTION`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions out of every [`TOTAL_PROPORTION`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids out of every [`TOTAL_PROPORTION`] events.
pub const BID_PROPORTION: u64 = 46;
/// The cycle of event kinds: person, then auctions, then bids.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// Id of the first person (Beam's `FIRST_PERSON_ID`).
pub const FIRST_PERSON_ID: i64 = 1000;
/// Id of the first auction (Beam's `FIRST_AUCTION_ID`).
pub const FIRST_AUCTION_ID: i64 = 1000;
/// The lowest auction category (Beam's `FIRST_CATEGORY_ID`); categories are 10..=14.
pub const FIRST_CATEGORY_ID: i64 = 10;
/// Default `--base-time-ms`: 2026-01-01T00:00:00Z.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_767_225_600_000;
/// Topic suffixes, in the order of [`Event::kind_index`].
pub const TOPIC_SUFFIXES: [&str; 3] = ["person", "auction", "bid"];

const NUM_CATEGORIES: u64 = 5;
/// Non-hot sellers and bidders are drawn from the last this many people.
const NUM_ACTIVE_PEOPLE: u64 = 1000;
/// Non-hot bids go to one of the last this many auctions.
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
/// 1 - 1/ratio of bids go to a hot auction, of auctions to a hot seller, of bids to a hot
/// bidder and of bids to a hot channel (Beam's `hot*Ratio` defaults).
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLERS_RATIO: u64 = 4;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_CHANNELS_RATIO: u64 = 2;
/// A hot auction, seller or bidder is the first (bidder: second) of its batch of this many.
const HOT_BATCH: u64 = 100;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS_NUMBER: u64 = 10_000;
/// `extra` pads events to these average sizes (Beam's `avg*ByteSize`).
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const FIRST_NAMES: [&str; 11] = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];

/// Settings of `samsa bench nexmark`.
#[derive(clap::Args, Clone, Debug)]
pub struct NexmarkArgs {
    /// A broker to start from.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Number of events to generate (persons, auctions and bids together).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub events: u64,
    /// Partitions of each topic this creates.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Prefix of the topics: PREFIXperson, PREFIXauction, PREFIXbid (created if missing,
    /// with retention.ms=-1 because event times lie in the past; existing ones are used as
    /// they are).
    #[arg(long, default_value = "nexmark-", value_name = "PREFIX")]
    pub topic_prefix: String,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events per second of event time (10000: events 100 µs apart).
    #[arg(long, default_value_t = 10_000, value_name = "EVENTS_PER_SEC")]
    pub event_rate: u64,
    /// Event time of the first event, in ms since the Unix epoch (default 2026-01-01T00:00:00Z).
    #[arg(long, default_value_t = DEFAULT_BASE_TIME_MS, value_name = "MS")]
    pub base_time_ms: i64,
    /// Only generate the events into the topics; do not run the queries.
    #[arg(long)]
    pub generate_only: bool,
    /// Only run the queries, over the events already in the topics.
    #[arg(long, conflicts_with = "generate_only")]
    pub queries_only: bool,
    /// Queries to run (default: all of them, q0 to q8).
    #[arg(long, value_delimiter = ',', value_name = "q0,q1,...")]
    pub queries: Vec<String>,
}

/// The Nexmark SQL of the repository (`sql/nexmark/`): the sources, then each query with
/// whether Samsa can run it yet.
pub const NEXMARK_DDL: &str = include_str!("../../sql/nexmark/ddl.sql");
/// The queries: name, SQL, and the suffixes of the source topics whose events it reads
/// (a table joined in does not count).
pub const NEXMARK_QUERIES: [(&str, &str, &[&str]); 9] = [
    ("q0", include_str!("../../sql/nexmark/q0.sql"), &["bid"]),
    ("q1", include_str!("../../sql/nexmark/q1.sql"), &["bid"]),
    ("q2", include_str!("../../sql/nexmark/q2.sql"), &["bid"]),
    ("q3", include_str!("../../sql/nexmark/q3.sql"), &["auction"]),
    ("q4", include_str!("../../sql/nexmark/q4.sql"), &["auction", "bid"]),
    ("q5", include_str!("../../sql/nexmark/q5.sql"), &["bid"]),
    ("q6", include_str!("../../sql/nexmark/q6.sql"), &["auction", "bid"]),
    ("q7", include_str!("../../sql/nexmark/q7.sql"), &["bid"]),
    ("q8", include_str!("../../sql/nexmark/q8.sql"), &["person", "auction"]),
];

/// A person who sells or bids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Person id, from [`FIRST_PERSON_ID`] up.
    pub id: i64,
    /// First and last name.
    pub name: String,
    /// An e-mail address.
    pub email_address: String,
    /// Sixteen digits in four groups.
    pub credit_card: String,
    /// US city.
    pub city: String,
    /// US state.
    pub state: String,
    /// Event time in ms since the epoch.
    pub date_time: i64,
    /// Padding to the average person size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auction {
    /// Auction id, from [`FIRST_AUCTION_ID`] up.
    pub id: i64,
    /// Item name.
    pub item_name: String,
    /// Item description.
    pub description: String,
    /// Opening price in cents.
    pub initial_bid: i64,
    /// Reserve price in cents, above `initial_bid`.
    pub reserve: i64,
    /// Event time in ms since the epoch.
    pub date_time: i64,
    /// When the auction closes, in ms since the epoch (after `date_time`).
    pub expires: i64,
    /// Id of the selling person.
    pub seller: i64,
    /// Category, 10..=14.
    pub category: i64,
    /// Padding to the average auction size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    /// Id of the auction.
    pub auction: i64,
    /// Id of the bidding person.
    pub bidder: i64,
    /// Price in cents.
    pub price: i64,
    /// Where the bid came from ("Google", ..., or "channel-N").
    pub channel: String,
    /// The bid's page.
    pub url: String,
    /// Event time in ms since the epoch.
    pub date_time: i64,
    /// Padding to the average bid size.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// 0 for a person, 1 for an auction, 2 for a bid (the index into [`TOPIC_SUFFIXES`]).
    pub fn kind_index(&self) -> usize {
        match self {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }
    }

    /// The topic name after the prefix: "person", "auction" or "bid".
    pub fn topic_suffix(&self) -> &'static str {
        TOPIC_SUFFIXES[self.kind_index()]
    }

    /// The record key: the person id, the auction id, or a bid's auction id, in decimal.
    pub fn key(&self) -> String {
        match self {
            Event::Person(p) => p.id.to_string(),
            Event::Auction(a) => a.id.to_string(),
            Event::Bid(b) => b.auction.to_string(),
        }
    }

    /// Event time (`dateTime`) in ms since the epoch.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event as one line of JSON with Flink's Nexmark field names; `dateTime` and
    /// `expires` are epoch milliseconds. Strings need no escaping: the generator only
    /// produces letters, digits, spaces and `.:/_-?=&@`.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(128 + self.approx_len());
        // Writing to a String cannot fail.
        let _ = match self {
            Event::Person(p) => write!(
                s,
                r#"{{"id":{},"name":"{}","emailAddress":"{}","creditCard":"{}","city":"{}","state":"{}","dateTime":{},"extra":"{}"}}"#,
                p.id, p.name, p.email_address, p.credit_card, p.city, p.state, p.date_time, p.extra
            ),
            Event::Auction(a) => write!(
                s,
                r#"{{"id":{},"itemName":"{}","description":"{}","initialBid":{},"reserve":{},"dateTime":{},"expires":{},"seller":{},"category":{},"extra":"{}"}}"#,
                a.id, a.item_name, a.description, a.initial_bid, a.reserve, a.date_time, a.expires, a.seller, a.category, a.extra
            ),
            Event::Bid(b) => write!(
                s,
                r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}","url":"{}","dateTime":{},"extra":"{}"}}"#,
                b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, b.extra
            ),
        };
        s
    }

    fn approx_len(&self) -> usize {
        match self {
            Event::Person(p) => p.name.len() + p.email_address.len() + p.extra.len() + 40,
            Event::Auction(a) => a.item_name.len() + a.description.len() + a.extra.len(),
            Event::Bid(b) => b.channel.len() + b.url.len() + b.extra.len(),
        }
    }
}

/// SplitMix64: tiny, fast and the same everywhere (no dependency, so output never changes
/// with a crate upgrade).
struct Rng(u64);

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// An independent stream for (seed, stream); `stream` is an event number or a salt.
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix64(mix64(seed) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (n > 0); Lemire's multiply-shift, bias below 2^-40 for our n.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }

    /// Beam's `nextString`: 3 to `max_len - 1` characters, a-z with 1 in 13 `special`,
    /// trimmed of spaces.
    fn string(&mut self, max_len: u64, special: char) -> String {
        let len = 3 + self.below(max_len - 3);
        let s: String = (0..len).map(|_| if self.below(13) == 0 { special } else { (b'a' + self.below(26) as u8) as char }).collect();
        s.trim().to_string()
    }

    /// Exactly `len` letters a-z.
    fn exact_string(&mut self, len: usize) -> String {
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }

    /// Beam's `nextExtra`: padding so that `current + extra` averages `desired` bytes.
    fn extra(&mut self, current: usize, desired: usize) -> String {
        if current > desired {
            return String::new();
        }
        let want = desired - current;
        let delta = (want as f64 * 0.2).round() as usize;
        let size = want - delta + if delta == 0 { 0 } else { self.below(2 * delta as u64) as usize };
        self.exact_string(size)
    }

    /// Beam's `nextPrice`: log-uniform cents in [100, 100_000_000).
    fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// Flink's base URL: `https://www.nexmark.com/xxxxx/xxxxx/xxxxx/item.htm?query=1`.
    fn base_url(&mut self) -> String {
        format!("https://www.nexmark.com/{}/{}/{}/item.htm?query=1", self.string(5, '_'), self.string(5, '_'), self.string(5, '_'))
    }
}

/// Base-0 id of the last person generated at or before event `n`.
fn last_base0_person(n: u64) -> u64 {
    let (epoch, offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    // As Beam: past the persons of this cycle, the last one is the cycle's last person.
    let offset = if offset >= PERSON_PROPORTION { PERSON_PROPORTION - 1 } else { offset };
    epoch * PERSON_PROPORTION + offset
}

/// Base-0 id of the last auction generated at or before event `n` (n must not be the
/// first person, before any auction).
fn last_base0_auction(n: u64) -> u64 {
    let (epoch, offset) = (n / TOTAL_PROPORTION, n % TOTAL_PROPORTION);
    if offset < PERSON_PROPORTION {
        assert!(epoch > 0, "event {n} comes before the first auction");
        (epoch - 1) * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else {
        epoch * AUCTION_PROPORTION + (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1)
    }
}

/// Beam's `nextBase0PersonId` without its lead: one of the last `NUM_ACTIVE_PEOPLE`.
fn next_base0_person(n: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active)
}

/// Beam's `nextBase0AuctionId` without its lead: one of the last in-flight auctions.
fn next_base0_auction(n: u64, rng: &mut Rng) -> u64 {
    let last = last_base0_auction(n);
    let min = last.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(last - min + 1)
}

/// The deterministic Nexmark event source.
pub struct Generator {
    seed: u64,
    base_time_ms: i64,
    event_rate: u64,
    next: u64,
    hot_urls: [String; 4],
}

impl Generator {
    /// A generator of events `0, 1, ...` from `seed`, the first at `base_time_ms`, then
    /// `event_rate` per second of event time. Panics when `event_rate` is 0.
    pub fn new(seed: u64, base_time_ms: i64, event_rate: u64) -> Self {
        assert!(event_rate > 0, "event_rate must be positive");
        let mut rng = Rng::new(seed, u64::MAX);
        let hot_urls = std::array::from_fn(|_| rng.base_url());
        Generator { seed, base_time_ms, event_rate, next: 0, hot_urls }
    }

    /// Number of events `next_event` has returned.
    pub fn events_generated(&self) -> u64 {
        self.next
    }

    /// Event time of event `n`: `base + n * 1000 / rate` ms, rounded down (Beam's
    /// `timestampForEvent`).
    pub fn timestamp_ms_for(&self, n: u64) -> i64 {
        let offset = i128::from(n) * 1000 / i128::from(self.event_rate);
        self.base_time_ms.saturating_add(offset.min(i128::from(i64::MAX)) as i64)
    }

    /// The next event in sequence.
    pub fn next_event(&mut self) -> Event {
        let e = self.event(self.next);
        self.next += 1;
        e
    }

    /// Event number `n`, independent of what was generated before.
    pub fn event(&self, n: u64) -> Event {
        let mut rng = Rng::new(self.seed, n);
        let ts = self.timestamp_ms_for(n);
        let rem = n % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            Event::Person(self.person(n, ts, &mut rng))
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(self.auction(n, ts, &mut rng))
        } else {
            Event::Bid(self.bid(n, ts, &mut rng))
        }
    }

    fn person(&self, n: u64, ts: i64, rng: &mut Rng) -> Person {
        let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
        let email_address = format!("{}@{}.com", rng.string(7, ' '), rng.string(5, ' '));
        let credit_card = format!("{:04} {:04} {:04} {:04}", rng.below(10_000), rng.below(10_000), rng.below(10_000), rng.below(10_000));
        let city = rng.pick(&US_CITIES).to_string();
        let state = rng.pick(&US_STATES).to_string();
        let current = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = rng.extra(current, AVG_PERSON_BYTES);
        Person { id: FIRST_PERSON_ID + last_base0_person(n) as i64, name, email_address, credit_card, city, state, date_time: ts, extra }
    }

    fn auction(&self, n: u64, ts: i64, rng: &mut Rng) -> Auction {
        let seller = if rng.below(HOT_SELLERS_RATIO) > 0 { (last_base0_person(n) / HOT_BATCH) * HOT_BATCH } else { next_base0_person(n, rng) };
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
        let initial_bid = rng.price();
        // Beam: an auction lasts on average until `NUM_IN_FLIGHT_AUCTIONS` more auctions
        // have been generated, so about that many are open at any time.
        let events_for_auctions = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon_ms = self.timestamp_ms_for(n + events_for_auctions) - ts;
        let expires = ts + 1 + rng.below((horizon_ms * 2).max(1) as u64) as i64;
        let item_name = rng.string(20, ' ');
        let description = rng.string(100, ' ');
        let reserve = initial_bid + rng.price();
        let current = 8 + item_name.len() + description.len() + 8 * 5;
        let extra = rng.extra(current, AVG_AUCTION_BYTES);
        Auction {
            id: FIRST_AUCTION_ID + last_base0_auction(n) as i64,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller: FIRST_PERSON_ID + seller as i64,
            category,
            extra,
        }
    }

    fn bid(&self, n: u64, ts: i64, rng: &mut Rng) -> Bid {
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 { (last_base0_auction(n) / HOT_BATCH) * HOT_BATCH } else { next_base0_auction(n, rng) };
        let bidder = if rng.below(HOT_BIDDERS_RATIO) > 0 {
            // The second person of the batch (so hot bidders and sellers differ); Beam may
            // name one not generated yet, so fall back to the last person.
            ((last_base0_person(n) / HOT_BATCH) * HOT_BATCH + 1).min(last_base0_person(n))
        } else {
            next_base0_person(n, rng)
        };
        let price = rng.price();
        let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) > 0 {
            let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[i].to_string(), self.hot_urls[i].clone())
        } else {
            self.channel(rng.below(CHANNELS_NUMBER))
        };
        let extra = rng.extra(8 * 4, AVG_BID_BYTES);
        Bid { auction: FIRST_AUCTION_ID + auction as i64, bidder: FIRST_PERSON_ID + bidder as i64, price, channel, url, date_time: ts, extra }
    }

    /// Flink's channel cache entry `i`, derived from the seed instead of stored.
    fn channel(&self, i: u64) -> (String, String) {
        let mut rng = Rng::new(self.seed, u64::MAX - 1 - i);
        let mut url = rng.base_url();
        if rng.below(10) > 0 {
            let _ = write!(url, "&channel_id={}", (i as i32).reverse_bits().unsigned_abs());
        }
        (format!("channel-{i}"), url)
    }
}

/// Runs the benchmark: creates the topics and produces `--events` events into them.
pub async fn run(args: NexmarkArgs) -> Result<(), String> {
    if args.partitions < 1 {
        return Err(format!("--partitions must be at least 1, not {}", args.partitions));
    }
    if args.event_rate == 0 {
        return Err("--event-rate must be at least 1 event per second".into());
    }
    let topics: [String; 3] = TOPIC_SUFFIXES.map(|s| format!("{}{s}", args.topic_prefix));
    if args.queries_only {
        return run_queries(&args).await;
    }
    create_topics(&args, &topics).await?;
    eprintln!(
        "generating {} Nexmark events (seed {}, {} events/s of event time from {} ms) into {}",
        args.events,
        args.seed,
        args.event_rate,
        args.base_time_ms,
        topics.join(", ")
    );
    let start = Instant::now();
    let totals = produce_events(&args, &topics).await?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let all = totals.iter().fold(Totals::default(), |a, t| Totals { events: a.events + t.events, bytes: a.bytes + t.bytes });
    let row = |name: &str, t: &Totals| {
        vec![
            name.to_string(),
            t.events.to_string(),
            format!("{:.1}", t.bytes as f64 / 1e6),
            format!("{:.0}", t.events as f64 / secs),
            format!("{:.1}", t.bytes as f64 / secs / 1e6),
        ]
    };
    let mut rows: Vec<Vec<String>> = topics.iter().zip(&totals).map(|(name, t)| row(name, t)).collect();
    rows.push(row("total", &all));
    println!("samsa bench nexmark: {} events in {secs:.2} s, {} partition(s) per topic, acks=all (MB counts keys and values)", all.events, args.partitions);
    print_table(&["topic", "events", "MB", "events/s", "MB/s"], &rows);
    if args.generate_only {
        return Ok(());
    }
    run_queries(&args).await
}

/// Runs each chosen query as a persistent query in this process over everything in the
/// topics, timing it from its creation until it has processed every input event.
async fn run_queries(args: &NexmarkArgs) -> Result<(), String> {
    if let Some(unknown) = args.queries.iter().find(|q| !NEXMARK_QUERIES.iter().any(|(name, ..)| name == q)) {
        return Err(format!("there is no Nexmark query {unknown}: the queries are q0 to q8"));
    }
    let chosen: Vec<&(&str, &str, &[&str])> = NEXMARK_QUERIES.iter().filter(|(name, ..)| args.queries.is_empty() || args.queries.iter().any(|q| q == name)).collect();
    let state = std::env::temp_dir().join(format!("samsa-nexmark-{}", std::process::id()));
    let engine = samsa_sql::Engine::start(samsa_sql::EngineConfig { bootstrap: args.bootstrap.clone(), state_dir: state.clone(), run_queries: true })
        .await
        .map_err(|e| format!("cannot start the SQL engine: {e}"))?;
    let prefixed = |sql: &str| sql.replace("'nexmark-", &format!("'{}", args.topic_prefix));
    for piece in samsa_sql::split_statements(&prefixed(NEXMARK_DDL)).map_err(|e| e.to_string())? {
        if let Err(e) = engine.execute(&piece.sql).await {
            if !e.message.contains("already exists") {
                return Err(format!("Nexmark DDL failed: {e}"));
            }
        }
    }
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| connect_error(&args.bootstrap, e))?;
    let run_id = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    let mut rows = Vec::new();
    for (name, sql, source) in chosen {
        let mut input = 0;
        let mut topics = Vec::new();
        for suffix in source.iter() {
            let topic = format!("{}{suffix}", args.topic_prefix);
            input += topic_records(&admin, &topic).await?;
            topics.push(topic);
        }
        let topic = topics.join(" and ");
        let sink = format!("nexmark_{name}_{run_id}");
        let sql = sql.replace(&format!("nexmark_{name} "), &format!("{sink} "));
        let statement = samsa_sql::split_statements(&sql).map_err(|e| e.to_string())?.pop().ok_or("empty query file")?;
        let id = format!("{}_{}", if statement.sql.contains("CREATE TABLE") { "CTAS" } else { "CSAS" }, sink.to_ascii_uppercase());
        eprintln!("{name}: processing {input} events of {topic}");
        let start = Instant::now();
        engine.execute(&statement.sql).await.map_err(|e| format!("{name} failed to start: {e}"))?;
        let mut last_report = Instant::now();
        let (mut last_done, mut last_change) = (0, Instant::now());
        loop {
            let done = engine.query_progress(&id).await.unwrap_or(0);
            if done >= input {
                break;
            }
            if done != last_done {
                (last_done, last_change) = (done, Instant::now());
            } else if last_change.elapsed() > STALL_LIMIT {
                return Err(format!(
                    "{name} made no progress for {} s at {done} of {input} events; this process counts only its own share: \
                     a samsa server with its HTTP API on the same cluster runs persistent queries too (start it with --no-http for the bench)",
                    STALL_LIMIT.as_secs()
                ));
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                eprintln!("  {name}: {done}/{input} events ({:.0}/s)", done as f64 / start.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        rows.push(vec![name.to_string(), input.to_string(), format!("{secs:.2}"), format!("{:.0}", input as f64 / secs)]);
        let _ = engine.execute(&format!("TERMINATE {id}")).await;
        let _ = engine.execute(&format!("DROP {} {sink} DELETE TOPIC", if id.starts_with("CTAS") { "TABLE" } else { "STREAM" })).await;
    }
    engine.close().await;
    let _ = std::fs::remove_dir_all(&state);
    println!("Nexmark queries as persistent SQL queries (exactly_once_v2, one stream thread, in this process; time from CREATE until every input event is processed)");
    print_table(&["query", "input events", "seconds", "events/s"], &rows);
    Ok(())
}

/// How long a query may process nothing before the benchmark gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Records in a topic (end offsets minus start offsets).
async fn topic_records(admin: &Admin, topic: &str) -> Result<u64, String> {
    let info = admin.describe_topics(&[topic.to_string()]).await.map_err(|e| format!("topic {topic}: {e}"))?;
    let tps: Vec<samsa_client::TopicPartition> = info.iter().flat_map(|t| t.partitions.iter().map(|p| samsa_client::TopicPartition::new(topic, p.partition))).collect();
    let start = admin.list_offsets(&tps, samsa_client::admin::OffsetSpec::Earliest).await.map_err(|e| e.to_string())?;
    let end = admin.list_offsets(&tps, samsa_client::admin::OffsetSpec::Latest).await.map_err(|e| e.to_string())?;
    Ok(tps.iter().map(|tp| (end[tp].0 - start[tp].0).max(0) as u64).sum())
}

/// Events and key+value bytes acknowledged for one topic.
#[derive(Clone, Copy, Default)]
struct Totals {
    events: u64,
    bytes: u64,
}

async fn create_topics(args: &NexmarkArgs, topics: &[String; 3]) -> Result<(), String> {
    let admin = Admin::connect(&args.bootstrap).await.map_err(|e| connect_error(&args.bootstrap, e))?;
    for name in topics {
        // Event times lie in the past (2026-01-01 by default), so time-based retention
        // would soon delete whole segments of them.
        let topic = NewTopic::new(name, args.partitions, -1).config("retention.ms", "-1");
        match admin.create_topics(&[topic]).await {
            Ok(()) => eprintln!("created topic `{name}` with {} partitions", args.partitions),
            Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => {
                eprintln!("topic `{name}` exists; using it as it is")
            }
            Err(e) => return Err(format!("cannot create topic `{name}`: {e}")),
        }
    }
    Ok(())
}

fn connect_error(bootstrap: &str, e: samsa_client::Error) -> String {
    match e {
        // Its message already names the address.
        samsa_client::Error::Connect { .. } => e.to_string(),
        e => format!("cannot reach the broker at {bootstrap}: {e}"),
    }
}

async fn produce_events(args: &NexmarkArgs, topics: &[String; 3]) -> Result<[Totals; 3], String> {
    let mut config = ProducerConfig::new(&args.bootstrap).map_err(|e| e.to_string())?;
    for (k, v) in [("acks", "all"), ("batch.size", "1048576"), ("linger.ms", "5"), ("buffer.memory", "268435456"), ("max.request.size", "2097152")] {
        config.set(k, v).map_err(|e| format!("producer setting {k}={v}: {e}"))?;
    }
    let producer = Producer::new(config).await.map_err(|e| connect_error(&args.bootstrap, e))?;
    let acked = Arc::new(AtomicU64::new(0));
    let ticker = progress(acked.clone());
    // Sends only queue records; a separate task awaits the acknowledgements in order, so
    // up to the channel's capacity of records are in flight.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, u64, DeliveryFuture)>(100_000);
    let waiter_topics = topics.clone();
    let waiter = tokio::spawn(async move {
        let mut totals = [Totals::default(); 3];
        while let Some((kind, bytes, fut)) = rx.recv().await {
            fut.await.map_err(|e| format!("producing to `{}` failed: {e}", waiter_topics[kind]))?;
            totals[kind].events += 1;
            totals[kind].bytes += bytes;
            acked.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, String>(totals)
    });
    let mut generator = Generator::new(args.seed, args.base_time_ms, args.event_rate);
    let mut send_error = None;
    while generator.events_generated() < args.events {
        let event = generator.next_event();
        let kind = event.kind_index();
        debug_assert!(topics[kind].ends_with(event.topic_suffix()));
        let key = event.key();
        let value = event.to_json();
        let bytes = (key.len() + value.len()) as u64;
        let record = ProducerRecord::new(topics[kind].clone(), Bytes::from(value)).key(Bytes::from(key)).timestamp(event.timestamp_ms());
        match producer.send(record).await {
            Ok(fut) => {
                if tx.send((kind, bytes, fut)).await.is_err() {
                    break; // The waiter stopped on a failed delivery; its error is reported below.
                }
            }
            Err(e) => {
                send_error = Some(format!("cannot send to `{}`: {e}", topics[kind]));
                break;
            }
        }
    }
    drop(tx);
    producer.flush().await;
    let result = waiter.await.map_err(|e| format!("the acknowledgement task failed: {e}"));
    ticker.abort();
    if let Some(e) = send_error {
        return Err(e);
    }
    result?
}

/// Prints the acknowledged events and their rate on stderr every second until aborted.
fn progress(acked: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    crate::util::progress_every_second(acked, |secs, now, added| format!("  nexmark {secs:>5.1} s  {now:>12} events  {added:>10} events/s"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use clap::Parser;

    use super::*;

    /// A JSON value of the flat objects the generator writes.
    #[derive(Debug, PartialEq)]
    enum Value {
        Int(i64),
        Str(String),
    }

    /// Parses a flat JSON object of integers and unescaped strings, strictly: any other
    /// character, a missing comma or colon, or trailing bytes fail.
    fn parse_flat(line: &str) -> Result<Vec<(String, Value)>, String> {
        fn string(s: &[u8], i: &mut usize) -> Result<String, String> {
            if s.get(*i) != Some(&b'"') {
                return Err(format!("expected '\"' at {i}"));
            }
            let start = *i + 1;
            let end = start + s[start..].iter().position(|&c| c == b'"').ok_or("unterminated string")?;
            let text = std::str::from_utf8(&s[start..end]).map_err(|e| e.to_string())?;
            if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || " ./:_-?=&@".contains(*c))) {
                return Err(format!("unexpected character {c:?} in {text:?}"));
            }
            *i = end + 1;
            Ok(text.to_string())
        }
        let s = line.as_bytes();
        let mut i = 0;
        let mut out = Vec::new();
        let expect = |i: &mut usize, c: u8| {
            if s.get(*i) == Some(&c) {
                *i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {i} in {line}", c as char))
            }
        };
        expect(&mut i, b'{')?;
        loop {
            let key = string(s, &mut i)?;
            expect(&mut i, b':')?;
            let value = if s.get(i) == Some(&b'"') {
                Value::Str(string(s, &mut i)?)
            } else {
                let start = i;
                while s.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'-') {
                    i += 1;
                }
                Value::Int(line[start..i].parse().map_err(|e| format!("bad number at {start} in {line}: {e}"))?)
            };
            out.push((key, value));
            if s.get(i) == Some(&b',') {
                i += 1;
            } else {
                break;
            }
        }
        expect(&mut i, b'}')?;
        if i != s.len() {
            return Err(format!("trailing bytes after {i} in {line}"));
        }
        Ok(out)
    }

    fn default_generator() -> Generator {
        Generator::new(42, DEFAULT_BASE_TIME_MS, 10_000)
    }

    #[test]
    fn kinds_come_one_three_forty_six_in_every_fifty() {
        let mut g = default_generator();
        let k = 400;
        let mut counts = [0u64; 3];
        for cycle in 0..k {
            let mut in_cycle = [0u64; 3];
            for _ in 0..TOTAL_PROPORTION {
                in_cycle[g.next_event().kind_index()] += 1;
            }
            assert_eq!(in_cycle, [1, 3, 46], "cycle {cycle}");
            for (c, n) in counts.iter_mut().zip(in_cycle) {
                *c += n;
            }
        }
        assert_eq!(counts, [k, 3 * k, 46 * k]);
        assert_eq!(g.events_generated(), 50 * k);
    }

    #[test]
    fn same_seed_same_events_and_other_seed_other_events() {
        let lines = |seed| {
            let mut g = Generator::new(seed, DEFAULT_BASE_TIME_MS, 10_000);
            (0..1000).map(|_| g.next_event().to_json()).collect::<Vec<_>>()
        };
        let a = lines(42);
        assert_eq!(a, lines(42));
        let b = lines(43);
        assert_ne!(a, b);
        // Not just one field: nearly every line differs.
        assert!(a.iter().zip(&b).filter(|(x, y)| x != y).count() > 990);
        // Random access gives the same events as the sequence.
        let g = default_generator();
        for n in [0, 1, 4, 49, 50, 777, 999] {
            assert_eq!(g.event(n).to_json(), a[n as usize]);
        }
    }

    #[test]
    fn ids_are_consecutive_and_references_point_back() {
        let mut g = default_generator();
        let (mut persons, mut auctions) = (HashSet::new(), HashSet::new());
        let (mut bids, mut hot_auction, mut hot_bidder) = (0u64, 0u64, 0u64);
        for n in 0..200_000u64 {
            match g.next_event() {
                Event::Person(p) => {
                    assert_eq!(p.id, FIRST_PERSON_ID + persons.len() as i64, "event {n}");
                    persons.insert(p.id);
                }
                Event::Auction(a) => {
                    assert_eq!(a.id, FIRST_AUCTION_ID + auctions.len() as i64, "event {n}");
                    assert!(persons.contains(&a.seller), "event {n}: seller {} unknown", a.seller);
                    assert!((10..=14).contains(&a.category), "event {n}: category {}", a.category);
                    assert!(a.reserve > a.initial_bid && a.initial_bid >= 100, "event {n}: {a:?}");
                    assert!(a.expires > a.date_time, "event {n}: {a:?}");
                    auctions.insert(a.id);
                }
                Event::Bid(b) => {
                    assert!(auctions.contains(&b.auction), "event {n}: auction {} unknown", b.auction);
                    assert!(persons.contains(&b.bidder), "event {n}: bidder {} unknown", b.bidder);
                    assert!((100..100_000_000).contains(&b.price), "event {n}: {b:?}");
                    assert!(b.url.starts_with("https://www.nexmark.com/"), "event {n}: {}", b.url);
                    bids += 1;
                    hot_auction += u64::from((b.auction - FIRST_AUCTION_ID) % 100 == 0);
                    hot_bidder += u64::from((b.bidder - FIRST_PERSON_ID) % 100 == 1);
                }
            }
        }
        assert_eq!((persons.len(), auctions.len(), bids), (4000, 12_000, 184_000));
        // About 1 in 2 bids go to a hot auction and 3 in 4 come from a hot bidder.
        let (ha, hb) = (hot_auction as f64 / bids as f64, hot_bidder as f64 / bids as f64);
        assert!((0.45..0.56).contains(&ha), "hot auction share {ha}");
        assert!((0.70..0.80).contains(&hb), "hot bidder share {hb}");
    }

    #[test]
    fn event_time_advances_by_the_inter_event_delay() {
        // 10 000 events/s: 100 µs apart, so ten events share each millisecond.
        let mut g = default_generator();
        let mut prev = i64::MIN;
        for n in 0..100_000i64 {
            let ts = g.next_event().timestamp_ms();
            assert_eq!(ts, DEFAULT_BASE_TIME_MS + n / 10, "event {n}");
            assert!(ts >= prev);
            prev = ts;
        }
        // 1000 events/s: strictly increasing, exactly 1 ms apart.
        let mut g = Generator::new(7, 1_000, 1_000);
        let times: Vec<i64> = (0..5000).map(|_| g.next_event().timestamp_ms()).collect();
        assert_eq!(times[0], 1_000);
        assert!(times.windows(2).all(|w| w[1] - w[0] == 1));
        // Odd rates round down from the exact time, never drift.
        let g = Generator::new(7, 0, 3);
        assert_eq!([0, 1, 2, 3, 4].map(|n| g.timestamp_ms_for(n)), [0, 333, 666, 1000, 1333]);
    }

    #[test]
    fn json_lines_parse_with_flink_field_names_and_match_the_event() {
        let mut g = default_generator();
        let mut seen = [false; 3];
        for _ in 0..5000 {
            let event = g.next_event();
            let line = event.to_json();
            let fields = parse_flat(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            let int = |k: &str| match fields.iter().find(|(n, _)| n == k) {
                Some((_, Value::Int(v))) => *v,
                other => panic!("{k} is not an integer: {other:?} in {line}"),
            };
            let string = |k: &str| match fields.iter().find(|(n, _)| n == k) {
                Some((_, Value::Str(v))) => v.clone(),
                other => panic!("{k} is not a string: {other:?} in {line}"),
            };
            assert_eq!(int("dateTime"), event.timestamp_ms());
            match &event {
                Event::Person(p) => {
                    assert_eq!(names, ["id", "name", "emailAddress", "creditCard", "city", "state", "dateTime", "extra"]);
                    assert_eq!((int("id"), string("name"), string("city")), (p.id, p.name.clone(), p.city.clone()));
                    assert_eq!(event.key(), p.id.to_string());
                    assert!(string("creditCard").len() == 19 && string("emailAddress").ends_with(".com"));
                }
                Event::Auction(a) => {
                    assert_eq!(names, ["id", "itemName", "description", "initialBid", "reserve", "dateTime", "expires", "seller", "category", "extra"]);
                    assert_eq!((int("id"), int("seller"), int("reserve"), int("expires")), (a.id, a.seller, a.reserve, a.expires));
                    assert_eq!(event.key(), a.id.to_string());
                }
                Event::Bid(b) => {
                    assert_eq!(names, ["auction", "bidder", "price", "channel", "url", "dateTime", "extra"]);
                    assert_eq!((int("auction"), int("bidder"), int("price"), string("url")), (b.auction, b.bidder, b.price, b.url.clone()));
                    assert_eq!(event.key(), b.auction.to_string());
                }
            }
            seen[event.kind_index()] = true;
            assert_eq!(event.topic_suffix(), TOPIC_SUFFIXES[event.kind_index()]);
        }
        assert_eq!(seen, [true; 3]);
        assert!(parse_flat(r#"{"a":1,"b":"x"y"}"#).is_err() && parse_flat(r#"{"a":1"#).is_err());
    }

    #[test]
    fn extra_pads_events_to_beams_average_sizes() {
        let mut g = default_generator();
        let (mut sizes, mut counts) = ([0usize; 3], [0usize; 3]);
        for _ in 0..50_000 {
            let e = g.next_event();
            let extra = match &e {
                Event::Person(p) => p.extra.len(),
                Event::Auction(a) => a.extra.len(),
                Event::Bid(b) => b.extra.len(),
            };
            sizes[e.kind_index()] += extra;
            counts[e.kind_index()] += 1;
        }
        let avg = |i: usize| sizes[i] as f64 / counts[i] as f64;
        // Bids: 100 bytes minus 32 of numbers, so 68 ± 20 % on average.
        assert!((64.0..72.0).contains(&avg(2)), "bid extra {}", avg(2));
        assert!(avg(0) > 100.0 && avg(1) > 350.0, "person {} auction {}", avg(0), avg(1));
    }

    #[test]
    fn flags_default_as_documented() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: NexmarkArgs,
        }
        let a = Cli::try_parse_from(["nexmark"]).expect("defaults parse").args;
        assert_eq!((a.bootstrap.as_str(), a.events, a.partitions, a.topic_prefix.as_str()), ("127.0.0.1:9092", 1_000_000, 6, "nexmark-"));
        assert_eq!((a.seed, a.event_rate, a.base_time_ms, a.generate_only), (42, 10_000, 1_767_225_600_000, false));
        let a = Cli::try_parse_from(["nexmark", "--events", "5", "--seed", "9", "--generate-only"]).expect("flags parse").args;
        assert_eq!((a.events, a.seed, a.generate_only), (5, 9, true));
    }
}
