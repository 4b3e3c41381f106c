//! Network address types (`inet`, `cidr`, `macaddr`, `macaddr8`) printed as
//! PostgreSQL prints them.

use std::fmt::Write;
use std::net::IpAddr;

use super::DecodeError;

/// `inet` (`cidr == false`: the `/n` suffix only when the mask is not the full
/// host mask) and `cidr` (always `/n`).
pub(super) fn inet(raw: &[u8], cidr: bool) -> Result<String, DecodeError> {
    let inet = postgres_protocol::types::inet_from_sql(raw)?;
    let (mut out, full) = match inet.addr() {
        IpAddr::V4(a) => (a.to_string(), 32),
        IpAddr::V6(a) => (ipv6(a.octets()), 128),
    };
    if cidr || inet.netmask() != full {
        let _ = write!(out, "/{}", inet.netmask());
    }
    Ok(out)
}

/// IPv6 text as PostgreSQL writes it: lowercase hex groups, the first longest
/// run of two or more zero groups as `::`, and a dotted IPv4 tail for
/// IPv4-mapped (`::ffff:1.2.3.4`) and IPv4-compatible (`::1.2.3.4`) addresses.
/// (Rust's own `Display` differs on the latter.)
pub(super) fn ipv6(octets: [u8; 16]) -> String {
    let words: [u16; 8] =
        std::array::from_fn(|i| u16::from_be_bytes([octets[2 * i], octets[2 * i + 1]]));
    // Longest run of zero words (first one on ties), at least two long.
    let (mut best_base, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_base, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_base = usize::MAX;
    }
    let in_run = |i: usize| best_base != usize::MAX && i >= best_base && i < best_base + best_len;

    let mut out = String::with_capacity(39);
    for i in 0..8 {
        if in_run(i) {
            if i == best_base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            let _ = write!(
                out,
                "{}.{}.{}.{}",
                octets[12], octets[13], octets[14], octets[15]
            );
            return out;
        }
        let _ = write!(out, "{:x}", words[i]);
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        out.push(':');
    }
    out
}

/// `macaddr` (6 bytes) and `macaddr8` (8 bytes): lowercase hex pairs with `:`.
pub(super) fn mac(raw: &[u8], len: usize) -> Result<String, DecodeError> {
    if raw.len() != len {
        return Err(format!("invalid MAC address length {}", raw.len()).into());
    }
    let mut out = String::with_capacity(len * 3);
    for (i, b) in raw.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02x}");
    }
    Ok(out)
}
