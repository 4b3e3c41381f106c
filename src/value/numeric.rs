//! `numeric` from its binary form to exact decimal text.
//!
//! Decoded by hand on purpose: Aurora DSQL allows a precision of up to 1000
//! digits, and the value must come out exactly as PostgreSQL prints it, with its
//! own scale (`12.50` keeps its trailing zero). The decimal crates do not fit:
//! rust_decimal stops at 28 significant digits, and the arbitrary-precision ones
//! normalise the scale away or go through floating point. The wire format is
//! small enough to read directly.
//!
//! Wire layout (all big-endian): `ndigits: i16`, `weight: i16` (power of 10000
//! of the first digit), `sign: u16`, `dscale: u16` (digits after the point),
//! then `ndigits` base-10000 digits as `i16`, trailing zero digits omitted.

use std::fmt::Write;

use super::{DecodeError, Reader};

const SIGN_POS: u16 = 0x0000;
const SIGN_NEG: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;
/// PostgreSQL refuses a display scale with any of the top two bits set.
const DSCALE_MASK: u16 = 0x3FFF;

/// The text PostgreSQL's `numeric_out` gives for this binary value.
pub(super) fn to_text(raw: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(raw);
    let ndigits = r.i16()?;
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = r.u16()?;
    if ndigits < 0 {
        return Err("invalid numeric: negative digit count".into());
    }
    let mut digits = Vec::with_capacity(ndigits as usize);
    for _ in 0..ndigits {
        let d = r.i16()?;
        if !(0..=9999).contains(&d) {
            return Err("invalid numeric: digit out of range".into());
        }
        digits.push(d);
    }
    r.finish("numeric")?;
    match sign {
        SIGN_NAN => return Ok("NaN".to_owned()),
        SIGN_PINF => return Ok("Infinity".to_owned()),
        SIGN_NINF => return Ok("-Infinity".to_owned()),
        SIGN_POS | SIGN_NEG => {}
        _ => return Err("invalid numeric: bad sign".into()),
    }
    if dscale & !DSCALE_MASK != 0 {
        return Err("invalid numeric: bad scale".into());
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };

    let int_groups = (weight + 1).max(1) as usize;
    let mut out = String::with_capacity(1 + int_groups * 4 + 1 + usize::from(dscale) + 4);
    if sign == SIGN_NEG {
        out.push('-');
    }
    // Integer part: the first group without leading zeros, the rest padded.
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let _ = if i == 0 {
                write!(out, "{}", digit(i))
            } else {
                write!(out, "{:04}", digit(i))
            };
        }
    }
    // Fraction: whole groups from weight + 1 on, then cut to the scale.
    if dscale > 0 {
        out.push('.');
        let end = out.len() + usize::from(dscale);
        let mut i = weight + 1;
        while out.len() < end {
            let _ = write!(out, "{:04}", digit(i));
            i += 1;
        }
        out.truncate(end);
    }
    Ok(out)
}
