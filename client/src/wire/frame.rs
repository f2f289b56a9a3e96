//! Length-prefixed framing: every Kafka request and response is a 4-byte big-endian size
//! followed by that many bytes.

/// What [`check`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// Not enough bytes yet; read more. `needed` is the total buffer length required
    /// (prefix included) when known, otherwise 4.
    Incomplete {
        /// Total number of bytes the buffer must hold before the frame is complete.
        needed: usize,
    },
    /// A whole frame is present: its body is `buf[4..4 + len]`.
    Complete {
        /// Length of the frame body, without the 4-byte prefix.
        len: usize,
    },
    /// The size prefix is negative or over the limit: the connection must be closed,
    /// because the stream can no longer be re-synchronised.
    TooLarge {
        /// The size the peer announced.
        announced: i64,
    },
}

/// Looks at the front of `buf` and says whether a complete frame of at most `max_len`
/// body bytes is there.
pub fn check(buf: &[u8], max_len: usize) -> FrameCheck {
    if buf.len() < 4 {
        return FrameCheck::Incomplete { needed: 4 };
    }
    let announced = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if announced < 0 || announced as usize > max_len {
        return FrameCheck::TooLarge { announced: i64::from(announced) };
    }
    let len = announced as usize;
    if buf.len() < 4 + len {
        FrameCheck::Incomplete { needed: 4 + len }
    } else {
        FrameCheck::Complete { len }
    }
}

/// Writes the 4-byte size prefix for a body of `len` bytes.
pub fn size_prefix(len: usize) -> [u8; 4] {
    (len as i32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_complete_and_too_large() {
        assert_eq!(check(&[0, 0], 10), FrameCheck::Incomplete { needed: 4 });
        assert_eq!(check(&[0, 0, 0, 3, 1], 10), FrameCheck::Incomplete { needed: 7 });
        assert_eq!(check(&[0, 0, 0, 3, 1, 2, 3, 9], 10), FrameCheck::Complete { len: 3 });
        assert_eq!(check(&[0, 0, 0, 11], 10), FrameCheck::TooLarge { announced: 11 });
        assert_eq!(check(&[0xff, 0xff, 0xff, 0xff], 10), FrameCheck::TooLarge { announced: -1 });
    }
}
