//! Incremental aggregates of continuous queries: the accumulator of each aggregate, kept
//! per group in a state store as JSON, and how an input row is added to it or retracted
//! from it.
//!
//! Values travel as text and are typed again from the plan's schema. Most accumulators
//! are a number or two. Three keep more:
//! - `COUNT(DISTINCT x)` keeps how many times each distinct value was seen;
//! - MIN and MAX of an input whose rows change (an aggregation over an aggregation), and
//!   `first_value`/`last_value` over such an input, keep a *bag*: every live input value
//!   with its count, in order, so that retracting the current best finds the next one;
//! - an OVER window (`AVG(x) OVER (PARTITION BY p ORDER BY t ROWS n PRECEDING)`) keeps
//!   the bag of its rows in window order, and only the last `n + 1` when its input only
//!   grows.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

type DfResult<T> = datafusion::common::Result<T>;

/// What an OVER window's frame aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowsOf {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// Supported incremental aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    Count,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
    /// `first_value(x ORDER BY y)` (and `last_value`, as the first in reverse order).
    First,
    /// An aggregate over a window frame `ROWS BETWEEN preceding PRECEDING AND CURRENT ROW`
    /// (`None`: UNBOUNDED PRECEDING), valued at the partition's last row.
    Rows {
        preceding: Option<u64>,
        of: RowsOf,
    },
}

/// One aggregate of a query, as its accumulator needs it.
#[derive(Debug, Clone)]
pub(crate) struct AggSpec {
    pub kind: AggKind,
    /// The result's type (the argument's too, for MIN, MAX and `first_value`).
    pub out: DataType,
    /// The type of the ORDER BY value (`first_value`, OVER windows).
    pub order: Option<DataType>,
    /// The order is descending.
    pub desc: bool,
    /// Input rows may be retracted.
    pub retracting: bool,
}

impl AggSpec {
    /// Whether this aggregate keeps a bag of its live inputs.
    fn bagged(&self) -> bool {
        match self.kind {
            AggKind::Min | AggKind::Max | AggKind::First => self.retracting,
            AggKind::Rows { .. } => true,
            _ => false,
        }
    }

    /// Orders two bag entries in window order (MIN and MAX: by value).
    fn cmp_entries(&self, a: &BagEntry, b: &BagEntry) -> Ordering {
        let t = self.order.as_ref().unwrap_or(&self.out);
        let by_order = match (&a.0, &b.0) {
            (Some(x), Some(y)) => compare(t, x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        };
        let by_order = if self.desc { by_order.reverse() } else { by_order };
        by_order.then_with(|| a.1.cmp(&b.1))
    }

    /// Whether `order` comes before `best` in window order.
    fn before(&self, order: &str, best: &str) -> bool {
        let t = self.order.as_ref().unwrap_or(&self.out);
        let c = compare(t, order, best);
        if self.desc {
            c.is_gt()
        } else {
            c.is_lt()
        }
    }
}

/// Aggregation input, carried through the repartition topic: group values, argument
/// values and ORDER BY values as text (typed again from the plan where needed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AggInput {
    pub g: Vec<Option<String>>,
    pub a: Vec<Option<String>>,
    /// The ORDER BY value of each aggregate that has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub o: Vec<Option<String>>,
    /// +1 adds the input, -1 retracts it.
    #[serde(default = "plus_one", skip_serializing_if = "is_plus_one")]
    pub s: i64,
}

fn plus_one() -> i64 {
    1
}

fn is_plus_one(s: &i64) -> bool {
    *s == 1
}

/// A bag entry: (ORDER BY value, argument value, how many times it is live). MIN and MAX
/// keep their value as the order.
pub(crate) type BagEntry = (Option<String>, Option<String>, i64);

/// One accumulator's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum Acc {
    Count(i64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Min(Option<String>),
    Max(Option<String>),
    Avg(f64, i64),
    /// Each distinct value with its count.
    Distinct(BTreeMap<String, i64>),
    /// Live inputs in window order.
    Bag(Vec<BagEntry>),
    /// The first (ORDER BY value, value) so far, of an input that only grows.
    Best(Option<(String, Option<String>)>),
}

/// A group's state: its group values and accumulators.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct AccState {
    pub g: Vec<Option<String>>,
    pub acc: Vec<Acc>,
    /// Inputs added minus inputs retracted.
    #[serde(default)]
    pub rows: i64,
}

fn parse_f64(s: &str) -> Option<f64> {
    s.parse().ok()
}

/// Compares two values of type `dt` given as text (as text when they do not parse).
pub(crate) fn compare(dt: &DataType, a: &str, b: &str) -> Ordering {
    match (ScalarValue::try_from_string(a.to_string(), dt), ScalarValue::try_from_string(b.to_string(), dt)) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn empty_acc(spec: &AggSpec) -> Acc {
    if spec.bagged() {
        return Acc::Bag(Vec::new());
    }
    match spec.kind {
        AggKind::Count => Acc::Count(0),
        AggKind::CountDistinct => Acc::Distinct(BTreeMap::new()),
        AggKind::Sum if spec.out.is_integer() => Acc::SumInt(None),
        AggKind::Sum => Acc::SumFloat(None),
        AggKind::Min => Acc::Min(None),
        AggKind::Max => Acc::Max(None),
        AggKind::Avg => Acc::Avg(0.0, 0),
        AggKind::First => Acc::Best(None),
        AggKind::Rows { .. } => Acc::Bag(Vec::new()),
    }
}

/// Adds `count` of `entry` to a bag (a negative count retracts).
fn bag_add(spec: &AggSpec, bag: &mut Vec<BagEntry>, entry: BagEntry) {
    match bag.binary_search_by(|e| spec.cmp_entries(e, &entry)) {
        Ok(i) => {
            bag[i].2 += entry.2;
            if bag[i].2 <= 0 {
                bag.remove(i);
            }
        }
        Err(i) if entry.2 > 0 => bag.insert(i, entry),
        // Retracting what is not there (it was never added): nothing to do.
        Err(_) => {}
    }
    // A frame over an input that only grows needs only its last rows.
    if let (AggKind::Rows { preceding: Some(n), .. }, false) = (spec.kind, spec.retracting) {
        let mut keep = n as i64 + 1;
        let mut cut = bag.len();
        while cut > 0 && keep > 0 {
            cut -= 1;
            keep -= bag[cut].2;
        }
        if keep < 0 {
            bag[cut].2 += keep;
        }
        bag.drain(..cut);
    }
}

/// Adds one input to a group's state (or retracts it, `input.s == -1`).
pub(crate) fn accumulate(specs: &[AggSpec], input: AggInput, mut st: AccState) -> AccState {
    if st.acc.is_empty() {
        st.acc = specs.iter().map(empty_acc).collect();
    }
    st.g = input.g;
    let sign = input.s;
    st.rows += sign;
    for (i, (acc, spec)) in st.acc.iter_mut().zip(specs).enumerate() {
        let value = input.a.get(i).cloned().flatten();
        let order = input.o.get(i).cloned().flatten();
        add(spec, acc, value, order, sign);
    }
    st
}

fn add(spec: &AggSpec, acc: &mut Acc, value: Option<String>, order: Option<String>, sign: i64) {
    let t = &spec.out;
    match acc {
        Acc::Bag(bag) => {
            let entry = match spec.kind {
                // MIN/MAX: the value is the order; NULLs do not count.
                AggKind::Min | AggKind::Max => match value {
                    Some(v) => (Some(v), None, sign),
                    None => return,
                },
                // Rows without an order value have no place in the window.
                _ => match order {
                    Some(o) => (Some(o), value, sign),
                    None => return,
                },
            };
            bag_add(spec, bag, entry);
        }
        Acc::Best(best) => {
            let Some(o) = order else { return };
            if best.as_ref().is_none_or(|(b, _)| spec.before(&o, b)) {
                *best = Some((o, value));
            }
        }
        Acc::Distinct(seen) => {
            let Some(v) = value else { return };
            let n = seen.entry(v.clone()).or_insert(0);
            *n += sign;
            if *n <= 0 {
                seen.remove(&v);
            }
        }
        other => {
            let Some(text) = value else { return };
            match other {
                Acc::Count(n) => *n += sign,
                Acc::SumInt(s) => {
                    if let Ok(x) = text.parse::<i64>() {
                        *s = Some(s.unwrap_or(0).wrapping_add(sign.wrapping_mul(x)));
                    }
                }
                Acc::SumFloat(s) => {
                    if let Some(x) = parse_f64(&text) {
                        *s = Some(s.unwrap_or(0.0) + sign as f64 * x);
                    }
                }
                Acc::Min(m) => {
                    if m.as_ref().is_none_or(|cur| compare(t, &text, cur).is_lt()) {
                        *m = Some(text);
                    }
                }
                Acc::Max(m) => {
                    if m.as_ref().is_none_or(|cur| compare(t, &text, cur).is_gt()) {
                        *m = Some(text);
                    }
                }
                Acc::Avg(s, n) => {
                    if let Some(x) = parse_f64(&text) {
                        *s += sign as f64 * x;
                        *n += sign;
                    }
                }
                Acc::Bag(_) | Acc::Best(_) | Acc::Distinct(_) => {}
            }
        }
    }
}

/// Merges two session states (sessions joined by a record in between).
pub(crate) fn merge_states(specs: &[AggSpec], a: AccState, b: AccState) -> AccState {
    if a.acc.is_empty() {
        return b;
    }
    if b.acc.is_empty() {
        return a;
    }
    let acc = a
        .acc
        .into_iter()
        .zip(b.acc)
        .zip(specs)
        .map(|((x, y), spec)| {
            let t = &spec.out;
            match (x, y) {
                (Acc::Count(p), Acc::Count(q)) => Acc::Count(p + q),
                (Acc::SumInt(p), Acc::SumInt(q)) => Acc::SumInt(match (p, q) {
                    (None, None) => None,
                    (p, q) => Some(p.unwrap_or(0).wrapping_add(q.unwrap_or(0))),
                }),
                (Acc::SumFloat(p), Acc::SumFloat(q)) => Acc::SumFloat(match (p, q) {
                    (None, None) => None,
                    (p, q) => Some(p.unwrap_or(0.0) + q.unwrap_or(0.0)),
                }),
                (Acc::Min(p), Acc::Min(q)) => Acc::Min(match (p, q) {
                    (Some(p), Some(q)) => Some(if compare(t, &p, &q).is_le() { p } else { q }),
                    (p, q) => p.or(q),
                }),
                (Acc::Max(p), Acc::Max(q)) => Acc::Max(match (p, q) {
                    (Some(p), Some(q)) => Some(if compare(t, &p, &q).is_ge() { p } else { q }),
                    (p, q) => p.or(q),
                }),
                (Acc::Avg(s1, n1), Acc::Avg(s2, n2)) => Acc::Avg(s1 + s2, n1 + n2),
                (Acc::Distinct(mut p), Acc::Distinct(q)) => {
                    for (v, n) in q {
                        *p.entry(v).or_insert(0) += n;
                    }
                    Acc::Distinct(p)
                }
                (Acc::Bag(mut p), Acc::Bag(q)) => {
                    for e in q {
                        bag_add(spec, &mut p, e);
                    }
                    Acc::Bag(p)
                }
                (Acc::Best(p), Acc::Best(q)) => Acc::Best(match (p, q) {
                    (Some(p), Some(q)) => Some(if spec.before(&q.0, &p.0) { q } else { p }),
                    (p, q) => p.or(q),
                }),
                (x, _) => x,
            }
        })
        .collect();
    AccState { g: if a.g.is_empty() { b.g } else { a.g }, acc, rows: a.rows + b.rows }
}

fn typed(text: Option<&String>, t: &DataType) -> DfResult<ScalarValue> {
    match text {
        Some(text) => ScalarValue::try_from_string(text.clone(), t),
        None => ScalarValue::try_from(t),
    }
}

/// The values of the frame that ends at the bag's last row.
fn frame(bag: &[BagEntry], preceding: Option<u64>) -> Vec<&Option<String>> {
    let mut rows = Vec::new();
    let limit = preceding.map_or(usize::MAX, |n| n as usize + 1);
    for (_, v, n) in bag.iter().rev() {
        for _ in 0..*n {
            if rows.len() == limit {
                return rows;
            }
            rows.push(v);
        }
    }
    rows
}

/// The result of an accumulator, of type `spec.out`.
pub(crate) fn result(spec: &AggSpec, acc: &Acc) -> DfResult<ScalarValue> {
    let t = &spec.out;
    Ok(match acc {
        Acc::Count(n) => ScalarValue::Int64(Some(*n)),
        Acc::SumInt(s) => ScalarValue::Int64(*s),
        Acc::SumFloat(s) => ScalarValue::Float64(*s),
        Acc::Min(m) | Acc::Max(m) => typed(m.as_ref(), t)?,
        Acc::Avg(s, n) => ScalarValue::Float64((*n > 0).then(|| s / *n as f64)),
        Acc::Distinct(seen) => ScalarValue::Int64(Some(seen.len() as i64)),
        Acc::Best(best) => typed(best.as_ref().and_then(|b| b.1.as_ref()), t)?,
        Acc::Bag(bag) => match spec.kind {
            AggKind::Min => typed(bag.first().and_then(|e| e.0.as_ref()), t)?,
            AggKind::Max => typed(bag.last().and_then(|e| e.0.as_ref()), t)?,
            AggKind::First => typed(bag.first().and_then(|e| e.1.as_ref()), t)?,
            AggKind::Rows { preceding, of } => {
                let values: Vec<&String> = frame(bag, preceding).into_iter().flatten().collect();
                match of {
                    RowsOf::Count => ScalarValue::Int64(Some(values.len() as i64)),
                    RowsOf::Sum if t.is_integer() => {
                        let nums: Vec<i64> = values.iter().filter_map(|v| v.parse().ok()).collect();
                        ScalarValue::Int64((!nums.is_empty()).then(|| nums.iter().fold(0i64, |s, x| s.wrapping_add(*x))))
                    }
                    RowsOf::Sum | RowsOf::Avg => {
                        let nums: Vec<f64> = values.iter().filter_map(|v| parse_f64(v)).collect();
                        let sum: f64 = nums.iter().sum();
                        let v = if of == RowsOf::Sum { sum } else { sum / nums.len() as f64 };
                        ScalarValue::Float64((!nums.is_empty()).then_some(v))
                    }
                    RowsOf::Min => typed(values.iter().copied().min_by(|a, b| compare(t, a, b)), t)?,
                    RowsOf::Max => typed(values.iter().copied().max_by(|a, b| compare(t, a, b)), t)?,
                }
            }
            _ => ScalarValue::try_from(t)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: AggKind, out: DataType, order: Option<DataType>, desc: bool, retracting: bool) -> AggSpec {
        AggSpec { kind, out, order, desc, retracting }
    }

    fn input(a: &str, o: Option<&str>, s: i64) -> AggInput {
        AggInput { g: vec![], a: vec![Some(a.to_string())], o: vec![o.map(str::to_string)], s }
    }

    fn run(spec: &AggSpec, inputs: &[(&str, Option<&str>, i64)]) -> ScalarValue {
        let specs = std::slice::from_ref(spec);
        let st = inputs.iter().fold(AccState::default(), |st, (a, o, s)| accumulate(specs, input(a, *o, *s), st));
        result(spec, &st.acc[0]).unwrap()
    }

    #[test]
    fn max_over_a_changing_input_finds_the_next_best_after_a_retraction() {
        let s = spec(AggKind::Max, DataType::Int64, None, false, true);
        // Numbers compare as numbers, not text: 9 < 10.
        assert_eq!(run(&s, &[("9", None, 1), ("10", None, 1), ("10", None, -1)]), ScalarValue::Int64(Some(9)));
        assert_eq!(run(&s, &[("9", None, 1), ("9", None, 1), ("9", None, -1)]), ScalarValue::Int64(Some(9)));
        assert_eq!(run(&s, &[("9", None, 1), ("9", None, -1)]), ScalarValue::Int64(None));
    }

    #[test]
    fn count_distinct_counts_values_and_forgets_retracted_ones() {
        let s = spec(AggKind::CountDistinct, DataType::Int64, None, false, true);
        assert_eq!(run(&s, &[("a", None, 1), ("b", None, 1), ("a", None, 1), ("b", None, -1)]), ScalarValue::Int64(Some(1)));
    }

    #[test]
    fn first_value_follows_its_order_with_and_without_retractions() {
        for retracting in [false, true] {
            let s = spec(AggKind::First, DataType::Utf8, Some(DataType::Int64), true, retracting);
            assert_eq!(run(&s, &[("x", Some("9"), 1), ("y", Some("10"), 1), ("z", Some("2"), 1)]), ScalarValue::Utf8(Some("y".into())));
        }
        let s = spec(AggKind::First, DataType::Utf8, Some(DataType::Int64), true, true);
        assert_eq!(run(&s, &[("x", Some("9"), 1), ("y", Some("10"), 1), ("y", Some("10"), -1)]), ScalarValue::Utf8(Some("x".into())));
    }

    #[test]
    fn a_rows_frame_averages_the_last_rows_in_order() {
        let rows = [("1", Some("1"), 1), ("100", Some("5"), 1), ("2", Some("2"), 1), ("3", Some("3"), 1)];
        for retracting in [false, true] {
            let s = spec(AggKind::Rows { preceding: Some(1), of: RowsOf::Avg }, DataType::Float64, Some(DataType::Int64), false, retracting);
            // Ordered by time: 1, 2, 3, 100 (t=5); the frame is the last two.
            assert_eq!(run(&s, &rows), ScalarValue::Float64(Some(51.5)));
            let all = spec(AggKind::Rows { preceding: None, of: RowsOf::Sum }, DataType::Int64, Some(DataType::Int64), false, retracting);
            assert_eq!(run(&all, &rows), ScalarValue::Int64(Some(106)));
        }
        // Retracting the newest row brings the one before it back into the frame.
        let s = spec(AggKind::Rows { preceding: Some(1), of: RowsOf::Avg }, DataType::Float64, Some(DataType::Int64), false, true);
        let mut changed = rows.to_vec();
        changed.push(("100", Some("5"), -1));
        assert_eq!(run(&s, &changed), ScalarValue::Float64(Some(2.5)));
    }

    #[test]
    fn trimming_a_growing_frame_keeps_exactly_its_rows() {
        let s = spec(AggKind::Rows { preceding: Some(2), of: RowsOf::Count }, DataType::Int64, Some(DataType::Int64), false, false);
        let specs = std::slice::from_ref(&s);
        let st = ["1", "1", "1", "2", "0"].iter().fold(AccState::default(), |st, t| accumulate(specs, input("v", Some(t), 1), st));
        let Acc::Bag(bag) = &st.acc[0] else { panic!("a bag") };
        assert_eq!(bag.iter().map(|e| e.2).sum::<i64>(), 3);
        assert_eq!(result(&s, &st.acc[0]).unwrap(), ScalarValue::Int64(Some(3)));
    }
}
