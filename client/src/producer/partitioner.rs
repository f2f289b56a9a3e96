//! Partitioners: keyed records go where the Java client's default partitioner (and
//! librdkafka's `murmur2_random`) put them; keyless records stick to one partition until
//! a new batch is needed (KIP-480).

/// Kafka's murmur2 hash, bit for bit as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition for a keyed record among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// A random partition other than `avoid` when there is a choice.
pub fn next_sticky(partitions: i32, avoid: Option<i32>) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    loop {
        let p = fastrand::i32(0..partitions);
        if Some(p) != avoid {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Expected values from Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), *expected, "murmur2({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keyed_partition_is_positive_modulo() {
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
        }
        assert_eq!(partition_for_key(b"21", 1000), (-973932308i32 & 0x7fffffff) % 1000);
    }

    #[test]
    fn sticky_moves_away_when_it_can() {
        for _ in 0..100 {
            assert_ne!(next_sticky(3, Some(1)), 1);
        }
        assert_eq!(next_sticky(1, Some(0)), 0);
    }
}
