//! Unit tests: binary values built with postgres-protocol's encoders (or by
//! hand where it has none) and the exact JSON each must become.

use bytes::BytesMut;
use postgres_protocol::IsNull as PIsNull;
use postgres_protocol::types as pt;
use postgres_types::{Field, Kind, Type};
use serde_json::{Value, json};

use super::{Cell, TextParam, decode, type_name};

fn enc(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b);
    b.to_vec()
}

/// Decodes, and checks that the cell the row renderer writes from is written exactly as
/// serde_json writes the decoded value (so every case below covers both paths).
fn dec(ty: &Type, raw: &[u8]) -> Value {
    let value = decode(ty, raw).unwrap_or_else(|e| panic!("decode {ty}: {e}"));
    let cell = <Cell as postgres_types::FromSql>::from_sql(ty, raw).unwrap();
    let mut written = Vec::new();
    cell.write_json(&mut written);
    assert_eq!(
        String::from_utf8(written).unwrap(),
        serde_json::to_string(&value).unwrap(),
        "{ty}"
    );
    let pretty_differs =
        serde_json::to_string_pretty(&value).unwrap() != serde_json::to_string(&value).unwrap();
    assert_eq!(cell.nested().is_some(), pretty_differs, "{ty}");
    assert_eq!(cell.into_value(), value, "{ty}");
    value
}

/// Decodes and serialises, to check the exact JSON text.
fn dec_text(ty: &Type, raw: &[u8]) -> String {
    serde_json::to_string(&dec(ty, raw)).unwrap()
}

// ---------------------------------------------------------------- numbers

#[test]
fn integers() {
    assert_eq!(
        dec(&Type::INT2, &enc(|b| pt::int2_to_sql(-32768, b))),
        json!(-32768)
    );
    assert_eq!(
        dec(&Type::INT4, &enc(|b| pt::int4_to_sql(i32::MAX, b))),
        json!(2147483647)
    );
    assert_eq!(
        dec_text(&Type::INT8, &enc(|b| pt::int8_to_sql(i64::MAX, b))),
        "9223372036854775807"
    );
    assert_eq!(
        dec_text(&Type::INT8, &enc(|b| pt::int8_to_sql(i64::MIN, b))),
        "-9223372036854775808"
    );
    assert_eq!(
        dec(&Type::OID, &enc(|b| pt::oid_to_sql(u32::MAX, b))),
        json!(4294967295u32)
    );
    assert_eq!(
        dec(&Type::REGCLASS, &enc(|b| pt::oid_to_sql(1259, b))),
        json!(1259)
    );
    assert_eq!(dec(&Type::XID, &enc(|b| pt::oid_to_sql(42, b))), json!(42));
    assert_eq!(
        dec_text(&Type::XID8, &enc(|b| pt::int8_to_sql(-1, b))),
        "18446744073709551615"
    );
}

#[test]
fn malformed_fixed_width_is_an_error() {
    assert!(decode(&Type::INT4, &[0, 0, 1]).is_err());
    assert!(decode(&Type::INT8, &[0; 9]).is_err());
    assert!(decode(&Type::FLOAT8, &[]).is_err());
    assert!(decode(&Type::UUID, &[0; 15]).is_err());
    assert!(decode(&Type::BOOL, &[]).is_err());
}

#[test]
fn floats() {
    let f8 = |v: f64| dec_text(&Type::FLOAT8, &enc(|b| pt::float8_to_sql(v, b)));
    let f4 = |v: f32| dec_text(&Type::FLOAT4, &enc(|b| pt::float4_to_sql(v, b)));
    assert_eq!(f8(1.5), "1.5");
    assert_eq!(f8(0.1), "0.1");
    assert_eq!(f8(-2.0), "-2.0");
    assert_eq!(f8(1e300), "1e+300");
    assert_eq!(f8(f64::NAN), "\"NaN\"");
    assert_eq!(f8(f64::INFINITY), "\"Infinity\"");
    assert_eq!(f8(f64::NEG_INFINITY), "\"-Infinity\"");
    assert_eq!(f4(0.1), "0.1");
    assert_eq!(f4(3.4028235e38), "3.4028235e+38");
    assert_eq!(f4(1.0e-45), "1e-45");
    assert_eq!(f4(-1.25), "-1.25");
    assert_eq!(f4(f32::NAN), "\"NaN\"");
    assert_eq!(f4(f32::INFINITY), "\"Infinity\"");
    assert_eq!(f4(f32::NEG_INFINITY), "\"-Infinity\"");
}

/// Builds a numeric's binary form by hand.
fn numeric_raw(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&sign.to_be_bytes());
    v.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// Encodes canonical decimal text as PostgreSQL's numeric_send would.
fn numeric_from_text(s: &str) -> Vec<u8> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all = format!("{}{int}{frac}{}", "0".repeat(int_pad), "0".repeat(frac_pad));
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
        .collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    numeric_raw(
        weight,
        if neg { 0x4000 } else { 0 },
        frac.len() as u16,
        &groups,
    )
}

fn num(raw: &[u8]) -> Value {
    dec(&Type::NUMERIC, raw)
}

#[test]
fn numeric_hand_built() {
    assert_eq!(num(&numeric_raw(0, 0, 0, &[])), json!("0"));
    assert_eq!(num(&numeric_raw(0, 0, 2, &[])), json!("0.00"));
    assert_eq!(num(&numeric_raw(0, 0x4000, 1, &[1, 5000])), json!("-1.5"));
    assert_eq!(num(&numeric_raw(0, 0, 2, &[12, 5000])), json!("12.50"));
    assert_eq!(num(&numeric_raw(1, 0, 0, &[1])), json!("10000"));
    assert_eq!(num(&numeric_raw(2, 0, 0, &[1, 0, 7])), json!("100000007"));
    assert_eq!(
        num(&numeric_raw(2, 0, 4, &[1, 2345, 6789, 123])),
        json!("123456789.0123")
    );
    assert_eq!(
        num(&numeric_raw(-5, 0, 20, &[1])),
        json!("0.00000000000000000001")
    );
    assert_eq!(num(&numeric_raw(-1, 0, 3, &[1200])), json!("0.120"));
    assert_eq!(num(&numeric_raw(0, 0xC000, 0, &[])), json!("NaN"));
    assert_eq!(num(&numeric_raw(0, 0xD000, 0, &[])), json!("Infinity"));
    assert_eq!(num(&numeric_raw(0, 0xF000, 0, &[])), json!("-Infinity"));
}

#[test]
fn numeric_round_trips_canonical_text() {
    let long_int = "9".repeat(1000);
    let long_mixed = format!("{}.{}", "1".repeat(500), "2".repeat(500));
    let tiny = format!("0.{}1", "0".repeat(998));
    let cases = [
        "0",
        "0.00",
        "1",
        "-1",
        "12.50",
        "-1.5",
        "3.14159265358979323846264338327950288419716939937510",
        "100000000000000000000000000000000000000",
        "0.000001",
        "-0.0000500",
        "1234.5678",
        "99990000.00010000",
        long_int.as_str(),
        long_mixed.as_str(),
        tiny.as_str(),
    ];
    for c in cases {
        assert_eq!(num(&numeric_from_text(c)), json!(c), "{c}");
    }
}

#[test]
fn numeric_malformed() {
    assert!(decode(&Type::NUMERIC, &numeric_raw(0, 0, 0, &[10000])).is_err());
    assert!(decode(&Type::NUMERIC, &numeric_raw(0, 0, 0, &[-1])).is_err());
    assert!(decode(&Type::NUMERIC, &numeric_raw(0, 0x1234, 0, &[])).is_err());
    assert!(decode(&Type::NUMERIC, &numeric_raw(0, 0, 0xC000, &[])).is_err());
    let mut short = numeric_raw(0, 0, 0, &[1, 2]);
    short.pop();
    assert!(decode(&Type::NUMERIC, &short).is_err());
    assert!(decode(&Type::NUMERIC, &[0, 0, 0]).is_err());
    assert!(decode(&Type::NUMERIC, &[0xff, 0xff, 0, 0, 0, 0, 0, 0]).is_err());
}

// ---------------------------------------------------------------- text-like

#[test]
fn booleans_and_text() {
    assert_eq!(
        dec(&Type::BOOL, &enc(|b| pt::bool_to_sql(true, b))),
        json!(true)
    );
    assert_eq!(
        dec(&Type::BOOL, &enc(|b| pt::bool_to_sql(false, b))),
        json!(false)
    );
    let t = |ty: &Type, s: &str| dec(ty, &enc(|b| pt::text_to_sql(s, b)));
    assert_eq!(
        t(&Type::TEXT, "héllo \"wörld\"\n"),
        json!("héllo \"wörld\"\n")
    );
    assert_eq!(t(&Type::TEXT, ""), json!(""));
    assert_eq!(t(&Type::VARCHAR, "abc"), json!("abc"));
    assert_eq!(t(&Type::BPCHAR, "ab   "), json!("ab   "));
    assert_eq!(t(&Type::NAME, "pg_class"), json!("pg_class"));
    assert_eq!(t(&Type::UNKNOWN, "lit"), json!("lit"));
    assert_eq!(t(&Type::XML, "<a/>"), json!("<a/>"));
    assert!(decode(&Type::TEXT, &[0xff, 0xfe]).is_err());
}

#[test]
fn pg_char() {
    let c = |v: i8| dec(&Type::CHAR, &enc(|b| pt::char_to_sql(v, b)));
    assert_eq!(c(b'a' as i8), json!("a"));
    assert_eq!(c(0), json!(""));
    assert_eq!(c(0xc3u8 as i8), json!("\\303"));
}

#[test]
fn uuid() {
    let raw = enc(|b| {
        pt::uuid_to_sql(
            [
                0xA0, 0xEE, 0xBC, 0x99, 0x9C, 0x0B, 0x4E, 0xF8, 0xBB, 0x6D, 0x6B, 0xB9, 0xBD, 0x38,
                0x0A, 0x11,
            ],
            b,
        )
    });
    assert_eq!(
        dec(&Type::UUID, &raw),
        json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    );
}

#[test]
fn bytea() {
    assert_eq!(
        dec(&Type::BYTEA, &enc(|b| pt::bytea_to_sql(&[], b))),
        json!("\\x")
    );
    assert_eq!(
        dec(
            &Type::BYTEA,
            &enc(|b| pt::bytea_to_sql(&[0xde, 0xad, 0x00, 0x0f], b))
        ),
        json!("\\xdead000f")
    );
    assert_eq!(dec_text(&Type::BYTEA, &[1]), r#""\\x01""#);
}

// ---------------------------------------------------------------- json

#[test]
fn json_and_jsonb() {
    let doc = r#"{"b": [1, 2.5, null, "x"], "a": {"c": true}, "n": 12345678901234}"#;
    let expected = json!({"b": [1, 2.5, null, "x"], "a": {"c": true}, "n": 12345678901234i64});
    assert_eq!(dec(&Type::JSON, doc.as_bytes()), expected);
    let mut jsonb = vec![1u8];
    jsonb.extend_from_slice(doc.as_bytes());
    let v = dec(&Type::JSONB, &jsonb);
    assert_eq!(v, expected);
    // Key order is the document's.
    assert_eq!(
        serde_json::to_string(&v).unwrap(),
        r#"{"b":[1,2.5,null,"x"],"a":{"c":true},"n":12345678901234}"#
    );
    assert_eq!(dec(&Type::JSONB, b"\x01\"s\""), json!("s"));
    assert_eq!(dec(&Type::JSONB, b"\x01null"), Value::Null);
    assert!(decode(&Type::JSONB, b"\x02{}").is_err());
    assert!(decode(&Type::JSONB, b"").is_err());
    // Valid for PostgreSQL, out of range for f64: kept as text.
    assert_eq!(dec(&Type::JSON, b"1e400"), json!("1e400"));
    assert_eq!(dec(&Type::JSONPATH, b"\x01$.a[*]"), json!("$.a[*]"));
}

// ---------------------------------------------------------------- date/time

fn date(days: i32) -> Value {
    dec(&Type::DATE, &enc(|b| pt::date_to_sql(days, b)))
}
fn ts(ty: &Type, usecs: i64) -> Value {
    dec(ty, &enc(|b| pt::timestamp_to_sql(usecs, b)))
}

#[test]
fn dates() {
    assert_eq!(date(0), json!("2000-01-01"));
    assert_eq!(date(-1), json!("1999-12-31"));
    assert_eq!(date(8767), json!("2024-01-02"));
    assert_eq!(date(8825), json!("2024-02-29"));
    assert_eq!(date(-10957), json!("1970-01-01"));
    assert_eq!(date(-746117), json!("0044-03-15 BC"));
    assert_eq!(date(-2451507), json!("4713-01-01 BC"));
    assert_eq!(date(2145031948), json!("5874897-12-31"));
    assert_eq!(date(i32::MAX), json!("infinity"));
    assert_eq!(date(i32::MIN), json!("-infinity"));
    // Out of PostgreSQL's range but representable: still no panic.
    assert!(date(i32::MAX - 1).is_string());
    assert!(date(i32::MIN + 1).is_string());
}

#[test]
fn timestamps() {
    let t = Type::TIMESTAMP;
    let tz = Type::TIMESTAMPTZ;
    assert_eq!(ts(&t, 0), json!("2000-01-01T00:00:00"));
    assert_eq!(ts(&tz, 757479845000000), json!("2024-01-02T03:04:05Z"));
    assert_eq!(ts(&t, 757479845000000), json!("2024-01-02T03:04:05"));
    assert_eq!(ts(&t, 757479845123456), json!("2024-01-02T03:04:05.123456"));
    assert_eq!(ts(&t, 757479845500000), json!("2024-01-02T03:04:05.5"));
    assert_eq!(
        ts(&tz, 757479845000010),
        json!("2024-01-02T03:04:05.00001Z")
    );
    assert_eq!(ts(&t, -1), json!("1999-12-31T23:59:59.999999"));
    assert_eq!(
        ts(&tz, -64464465599500000),
        json!("0044-03-15T12:00:00.5Z BC")
    );
    assert_eq!(
        ts(&tz, 9223371331200000000 - 1),
        json!("294276-12-31T23:59:59.999999Z")
    );
    assert_eq!(ts(&t, i64::MAX), json!("infinity"));
    assert_eq!(ts(&tz, i64::MIN), json!("-infinity"));
    assert!(ts(&tz, i64::MAX - 1).is_string());
    assert!(ts(&tz, i64::MIN + 1).is_string());
}

#[test]
fn times() {
    let time = |us: i64| dec(&Type::TIME, &enc(|b| pt::time_to_sql(us, b)));
    assert_eq!(time(0), json!("00:00:00"));
    assert_eq!(time(36_672_000_000), json!("10:11:12"));
    assert_eq!(time(36_672_500_000), json!("10:11:12.5"));
    assert_eq!(time(36_672_000_001), json!("10:11:12.000001"));
    assert_eq!(time(86_400_000_000), json!("24:00:00"));
    assert!(decode(&Type::TIME, &enc(|b| pt::time_to_sql(-1, b))).is_err());

    let timetz = |us: i64, zone_west: i32| {
        let mut raw = enc(|b| pt::time_to_sql(us, b));
        raw.extend_from_slice(&zone_west.to_be_bytes());
        dec(&Type::TIMETZ, &raw)
    };
    assert_eq!(timetz(43_200_000_000, -19800), json!("12:00:00+05:30"));
    assert_eq!(timetz(43_200_000_000, 3723), json!("12:00:00-01:02:03"));
    assert_eq!(timetz(36_672_250_000, 0), json!("10:11:12.25+00:00"));
    assert!(decode(&Type::TIMETZ, &[0; 8]).is_err());
}

fn interval(usecs: i64, days: i32, months: i32) -> Value {
    let mut raw = usecs.to_be_bytes().to_vec();
    raw.extend_from_slice(&days.to_be_bytes());
    raw.extend_from_slice(&months.to_be_bytes());
    dec(&Type::INTERVAL, &raw)
}

#[test]
fn intervals() {
    const S: i64 = 1_000_000;
    assert_eq!(interval(0, 1, 0), json!("P1D"));
    assert_eq!(interval(0, 0, 0), json!("PT0S"));
    assert_eq!(interval(5400 * S, 0, 0), json!("PT1H30M"));
    assert_eq!(
        interval(4 * 3600 * S + 5 * 60 * S + 6 * S + S / 2, 3, 14),
        json!("P1Y2M3DT4H5M6.5S")
    );
    assert_eq!(interval(-2 * 3600 * S, -1, 0), json!("P-1DT-2H"));
    assert_eq!(interval(-2 * 3600 * S, 1, 0), json!("P1DT-2H"));
    assert_eq!(interval(-3 * S / 2, 0, 0), json!("PT-1.5S"));
    assert_eq!(interval(0, 0, -14), json!("P-1Y-2M"));
    assert_eq!(interval(0, 0, 12), json!("P1Y"));
    assert_eq!(interval(59 * S + S / 2, 0, 0), json!("PT59.5S"));
    assert_eq!(interval(1, 0, 0), json!("PT0.000001S"));
    assert_eq!(interval(-(3600 * S + 1), 0, 1), json!("P1MT-1H-0.000001S"));
    assert_eq!(interval(100 * 3600 * S, 0, 0), json!("PT100H"));
    assert_eq!(interval(i64::MAX, i32::MAX, i32::MAX), json!("infinity"));
    assert_eq!(interval(i64::MIN, i32::MIN, i32::MIN), json!("-infinity"));
    assert!(interval(i64::MIN, 0, i32::MIN).is_string());
    assert!(decode(&Type::INTERVAL, &[0; 12]).is_err());
}

// ---------------------------------------------------------------- network

fn inet_raw(family: u8, bits: u8, addr: &[u8]) -> Vec<u8> {
    let mut v = vec![family, bits, 0, addr.len() as u8];
    v.extend_from_slice(addr);
    v
}

#[test]
fn network() {
    let v4 = |ty: &Type, a: [u8; 4], bits: u8| dec(ty, &inet_raw(2, bits, &a));
    assert_eq!(v4(&Type::INET, [192, 168, 0, 1], 32), json!("192.168.0.1"));
    assert_eq!(v4(&Type::INET, [10, 1, 2, 3], 8), json!("10.1.2.3/8"));
    assert_eq!(v4(&Type::CIDR, [10, 0, 0, 0], 8), json!("10.0.0.0/8"));
    assert_eq!(v4(&Type::CIDR, [1, 2, 3, 4], 32), json!("1.2.3.4/32"));
    let v6 = |ty: &Type, s: &str, bits: u8| {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        dec(ty, &inet_raw(3, bits, &a.octets()))
    };
    assert_eq!(v6(&Type::INET, "::1", 128), json!("::1"));
    assert_eq!(v6(&Type::INET, "::", 128), json!("::"));
    assert_eq!(v6(&Type::CIDR, "::", 0), json!("::/0"));
    assert_eq!(v6(&Type::INET, "fe80::1", 64), json!("fe80::1/64"));
    assert_eq!(v6(&Type::INET, "1::", 128), json!("1::"));
    assert_eq!(
        v6(&Type::INET, "::ffff:1.2.3.4", 128),
        json!("::ffff:1.2.3.4")
    );
    assert_eq!(v6(&Type::INET, "::1.2.3.4", 128), json!("::1.2.3.4"));
    assert_eq!(v6(&Type::INET, "::2:3", 128), json!("::0.2.0.3"));
    assert_eq!(
        v6(&Type::INET, "2001:db8:0:1:1:1:1:1", 128),
        json!("2001:db8:0:1:1:1:1:1")
    );
    assert_eq!(v6(&Type::INET, "1:0:0:2:0:0:0:3", 128), json!("1:0:0:2::3"));
    assert_eq!(
        v6(&Type::INET, "1:0:0:2:3:0:0:4", 128),
        json!("1::2:3:0:0:4")
    );
    assert!(decode(&Type::INET, &inet_raw(2, 33, &[1, 2, 3, 4])).is_err());
    assert!(decode(&Type::INET, &[2, 32, 0]).is_err());

    let mac = enc(|b| pt::macaddr_to_sql([0x08, 0x00, 0x2b, 0x01, 0x02, 0x03], b));
    assert_eq!(dec(&Type::MACADDR, &mac), json!("08:00:2b:01:02:03"));
    assert_eq!(
        dec(&Type::MACADDR8, &[8, 0, 0x2b, 1, 2, 3, 4, 5]),
        json!("08:00:2b:01:02:03:04:05")
    );
    assert!(decode(&Type::MACADDR, &[1, 2, 3]).is_err());
}

// ---------------------------------------------------------------- arrays

fn int4_array(dims: &[i32], elems: &[Option<i32>]) -> Vec<u8> {
    enc(|b| {
        pt::array_to_sql(
            dims.iter().map(|&len| pt::ArrayDimension {
                len,
                lower_bound: 1,
            }),
            Type::INT4.oid(),
            elems.iter(),
            |e, buf| match e {
                Some(v) => {
                    pt::int4_to_sql(*v, buf);
                    Ok(PIsNull::No)
                }
                None => Ok(PIsNull::Yes),
            },
            b,
        )
        .unwrap()
    })
}

#[test]
fn arrays() {
    let a = int4_array(&[3], &[Some(1), None, Some(3)]);
    assert_eq!(dec(&Type::INT4_ARRAY, &a), json!([1, null, 3]));
    let a = int4_array(
        &[2, 3],
        &[Some(1), Some(2), Some(3), Some(4), None, Some(6)],
    );
    assert_eq!(dec(&Type::INT4_ARRAY, &a), json!([[1, 2, 3], [4, null, 6]]));
    let a = int4_array(&[2, 1, 2], &[Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(dec(&Type::INT4_ARRAY, &a), json!([[[1, 2]], [[3, 4]]]));
    let a = int4_array(&[], &[]);
    assert_eq!(dec(&Type::INT4_ARRAY, &a), json!([]));
    let a = int4_array(&[0], &[]);
    assert_eq!(dec(&Type::INT4_ARRAY, &a), json!([]));

    let texts = enc(|b| {
        pt::array_to_sql(
            [pt::ArrayDimension {
                len: 3,
                lower_bound: 0,
            }],
            Type::TEXT.oid(),
            [Some("a b"), Some("q\"\\"), None],
            |e, buf| match e {
                Some(s) => {
                    pt::text_to_sql(s, buf);
                    Ok(PIsNull::No)
                }
                None => Ok(PIsNull::Yes),
            },
            b,
        )
        .unwrap()
    });
    assert_eq!(
        dec(&Type::TEXT_ARRAY, &texts),
        json!(["a b", "q\"\\", null])
    );

    let nums = enc(|b| {
        pt::array_to_sql(
            [pt::ArrayDimension {
                len: 2,
                lower_bound: 1,
            }],
            Type::NUMERIC.oid(),
            ["12.50", "-0.001"],
            |s, buf| {
                buf.extend_from_slice(&numeric_from_text(s));
                Ok(PIsNull::No)
            },
            b,
        )
        .unwrap()
    });
    assert_eq!(dec(&Type::NUMERIC_ARRAY, &nums), json!(["12.50", "-0.001"]));

    // Truncated or inconsistent arrays are errors, never panics.
    let a = int4_array(&[3], &[Some(1), None, Some(3)]);
    for cut in 0..a.len() {
        assert!(decode(&Type::INT4_ARRAY, &a[..cut]).is_err(), "cut {cut}");
    }
    let mut extra = a.clone();
    extra.push(0);
    assert!(decode(&Type::INT4_ARRAY, &extra).is_err());
    let mut huge = a.clone();
    huge[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode(&Type::INT4_ARRAY, &huge).is_err());
}

// ---------------------------------------------------------------- rows

fn record_raw(fields: &[(u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut v = (fields.len() as i32).to_be_bytes().to_vec();
    for (oid, value) in fields {
        v.extend_from_slice(&oid.to_be_bytes());
        match value {
            None => v.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                v.extend_from_slice(b);
            }
        }
    }
    v
}

#[test]
fn records_and_composites() {
    let one = enc(|b| pt::int4_to_sql(1, b));
    let raw = record_raw(&[
        (23, Some(&one)),
        (25, Some(b"a")),
        (25, None),
        (99999, Some(&[7, 8])),
    ]);
    assert_eq!(dec(&Type::RECORD, &raw), json!([1, "a", null, "\\x0708"]));
    let nested = record_raw(&[(2249, Some(&raw))]);
    assert_eq!(
        dec(&Type::RECORD, &nested),
        json!([[1, "a", null, "\\x0708"]])
    );
    assert_eq!(dec(&Type::RECORD, &record_raw(&[])), json!([]));
    assert!(decode(&Type::RECORD, &raw[..raw.len() - 1]).is_err());

    let pair = Type::new(
        "pair".into(),
        99990,
        Kind::Composite(vec![
            Field::new("id".into(), Type::INT4),
            Field::new("label".into(), Type::TEXT),
        ]),
        "public".into(),
    );
    let raw = record_raw(&[(23, Some(&one)), (25, Some(b"x"))]);
    assert_eq!(dec(&pair, &raw), json!({"id": 1, "label": "x"}));
    // Field count mismatch: falls back to the anonymous form.
    let raw = record_raw(&[(23, Some(&one))]);
    assert_eq!(dec(&pair, &raw), json!([1]));
}

// ---------------------------------------------------------------- others

#[test]
fn other_builtins() {
    assert_eq!(dec(&Type::VOID, &[]), Value::Null);
    assert_eq!(dec(&Type::TID, &[0, 0, 0, 5, 0, 1]), json!("(5,1)"));
    assert_eq!(
        dec(&Type::PG_LSN, &enc(|b| pt::lsn_to_sql(0x16_B374_D848, b))),
        json!("16/B374D848")
    );
    let bits = enc(|b| pt::varbit_to_sql(10, [0b1010_0000, 0b0100_0000].into_iter(), b).unwrap());
    assert_eq!(dec(&Type::VARBIT, &bits), json!("1010000001"));
    assert_eq!(dec(&Type::BIT, &bits), json!("1010000001"));
    assert!(decode(&Type::VARBIT, &[0, 0, 0, 9, 0xff]).is_err());
}

#[test]
fn unknown_and_user_types() {
    // money: binary int8, not text: hex.
    let money = enc(|b| pt::int8_to_sql(1234, b));
    assert_eq!(dec(&Type::MONEY, &money), json!("\\x00000000000004d2"));
    assert_eq!(dec(&Type::TS_VECTOR, &[0, 0, 0, 0]), json!("\\x00000000"));
    assert_eq!(dec(&Type::POINT, &[]), json!("\\x"));
    let other = Type::new("thing".into(), 99992, Kind::Simple, "public".into());
    assert_eq!(dec(&other, &[0xab]), json!("\\xab"));
    let mood = Type::new(
        "mood".into(),
        99993,
        Kind::Enum(vec!["happy".into()]),
        "public".into(),
    );
    assert_eq!(dec(&mood, b"happy"), json!("happy"));
    let citext = Type::new("citext".into(), 99994, Kind::Simple, "public".into());
    assert_eq!(dec(&citext, b"MiXed"), json!("MiXed"));
    let dom = Type::new(
        "price".into(),
        99995,
        Kind::Domain(Type::NUMERIC),
        "public".into(),
    );
    assert_eq!(dec(&dom, &numeric_from_text("9.90")), json!("9.90"));
    let dom_arr = Type::new(
        "_price".into(),
        99996,
        Kind::Array(dom.clone()),
        "public".into(),
    );
    let raw = enc(|b| {
        pt::array_to_sql(
            [pt::ArrayDimension {
                len: 1,
                lower_bound: 1,
            }],
            99995,
            ["9.90"],
            |s, buf| {
                buf.extend_from_slice(&numeric_from_text(s));
                Ok(PIsNull::No)
            },
            b,
        )
        .unwrap()
    });
    assert_eq!(dec(&dom_arr, &raw), json!(["9.90"]));
    let hstore = Type::new("hstore".into(), 99997, Kind::Simple, "public".into());
    let mut raw = 2i32.to_be_bytes().to_vec();
    for (k, v) in [(&b"a"[..], Some(&b"1"[..])), (b"b", None)] {
        raw.extend_from_slice(&(k.len() as i32).to_be_bytes());
        raw.extend_from_slice(k);
        match v {
            Some(v) => {
                raw.extend_from_slice(&(v.len() as i32).to_be_bytes());
                raw.extend_from_slice(v);
            }
            None => raw.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    assert_eq!(dec(&hstore, &raw), json!({"a": "1", "b": null}));
    assert_eq!(dec(&hstore, &[1]), json!("\\x01"));
}

/// No built-in type panics on arbitrary bytes.
#[test]
fn never_panics() {
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 3],
        vec![0; 8],
        vec![0xff; 8],
        vec![0x80, 0, 0, 0, 0, 0, 0, 0],
        vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 23, 0, 0, 0, 2, 0, 0, 0, 1],
        vec![0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 23, 0x7f, 0xff, 0xff, 0xff],
        vec![1, b'{', b'"'],
        (0..=255).collect(),
    ];
    for oid in 0..7000 {
        if let Some(ty) = Type::from_oid(oid) {
            for s in &samples {
                let _ = decode(&ty, s);
            }
        }
    }
}

// ---------------------------------------------------------------- names

#[test]
fn type_names() {
    let cases = [
        (Type::INT2, "smallint"),
        (Type::INT4, "integer"),
        (Type::INT8, "bigint"),
        (Type::TEXT, "text"),
        (Type::VARCHAR, "character varying"),
        (Type::BPCHAR, "character"),
        (Type::CHAR, "\"char\""),
        (Type::NUMERIC, "numeric"),
        (Type::BOOL, "boolean"),
        (Type::FLOAT4, "real"),
        (Type::FLOAT8, "double precision"),
        (Type::TIMESTAMPTZ, "timestamp with time zone"),
        (Type::TIMESTAMP, "timestamp without time zone"),
        (Type::TIME, "time without time zone"),
        (Type::TIMETZ, "time with time zone"),
        (Type::DATE, "date"),
        (Type::INTERVAL, "interval"),
        (Type::UUID, "uuid"),
        (Type::JSON, "json"),
        (Type::JSONB, "jsonb"),
        (Type::BYTEA, "bytea"),
        (Type::INET, "inet"),
        (Type::VARBIT, "bit varying"),
        (Type::INT4_ARRAY, "integer[]"),
        (Type::TEXT_ARRAY, "text[]"),
        (Type::TIMESTAMPTZ_ARRAY, "timestamp with time zone[]"),
        (Type::INT2_VECTOR, "int2vector"),
        (Type::RECORD, "record"),
    ];
    for (ty, name) in cases {
        assert_eq!(type_name(&ty), name, "{ty}");
    }
    let mood = Type::new("mood".into(), 99993, Kind::Enum(vec![]), "public".into());
    assert_eq!(type_name(&mood), "mood");
    let moods = Type::new("_mood".into(), 99994, Kind::Array(mood), "public".into());
    assert_eq!(type_name(&moods), "mood[]");
}

// ---------------------------------------------------------------- parameters

fn param(v: Value, ty: &Type) -> Option<String> {
    TextParam::from_json(&v, ty).0
}

#[test]
fn text_params_scalars() {
    assert_eq!(param(Value::Null, &Type::INT4), None);
    assert_eq!(param(json!("abc"), &Type::TEXT), Some("abc".into()));
    assert_eq!(
        param(json!("{1,2}"), &Type::INT4_ARRAY),
        Some("{1,2}".into())
    );
    assert_eq!(param(json!(42), &Type::INT4), Some("42".into()));
    assert_eq!(param(json!(-1.5), &Type::NUMERIC), Some("-1.5".into()));
    assert_eq!(
        param(json!(9223372036854775807i64), &Type::INT8),
        Some("9223372036854775807".into())
    );
    assert_eq!(param(json!(true), &Type::BOOL), Some("true".into()));
    assert_eq!(param(json!(false), &Type::TEXT), Some("false".into()));
    assert_eq!(
        param(json!({"a": [1, "x"]}), &Type::JSONB),
        Some(r#"{"a":[1,"x"]}"#.into())
    );
    assert_eq!(param(json!([1, 2]), &Type::JSONB), Some("[1,2]".into()));
    assert_eq!(param(json!([1, 2]), &Type::TEXT), Some("[1,2]".into()));
}

#[test]
fn text_params_arrays() {
    assert_eq!(
        param(json!([1, 2, "a b", null]), &Type::TEXT_ARRAY),
        Some(r#"{1,2,"a b",NULL}"#.into())
    );
    assert_eq!(param(json!([]), &Type::INT4_ARRAY), Some("{}".into()));
    assert_eq!(
        param(json!([[1, 2], [3, null]]), &Type::INT4_ARRAY),
        Some("{{1,2},{3,NULL}}".into())
    );
    assert_eq!(
        param(
            json!(["q\"x", "back\\slash", "NULL", "", "{,}"]),
            &Type::TEXT_ARRAY
        ),
        Some(r#"{"q\"x","back\\slash","NULL","","{,}"}"#.into())
    );
    assert_eq!(
        param(json!([true, 1.5, {"k": "v"}]), &Type::TEXT_ARRAY),
        Some(r#"{true,1.5,"{\"k\":\"v\"}"}"#.into())
    );
    assert_eq!(
        param(json!([{"a": 1}, [1, 2], 3, "s", null]), &Type::JSONB_ARRAY),
        Some(r#"{"{\"a\":1}","[1,2]","3","s",NULL}"#.into())
    );
    let dom = Type::new(
        "ints".into(),
        99998,
        Kind::Domain(Type::INT4_ARRAY),
        "public".into(),
    );
    assert_eq!(param(json!([1, 2]), &dom), Some("{1,2}".into()));
}

#[test]
fn text_param_is_sent_as_text() {
    use postgres_types::{Format, ToSql};
    let p = TextParam(Some("12.50".into()));
    assert!(matches!(p.encode_format(&Type::NUMERIC), Format::Text));
    let mut buf = BytesMut::new();
    assert!(matches!(
        p.to_sql(&Type::NUMERIC, &mut buf).unwrap(),
        postgres_types::IsNull::No
    ));
    assert_eq!(&buf[..], b"12.50");
    let mut buf = BytesMut::new();
    assert!(matches!(
        TextParam(None).to_sql(&Type::NUMERIC, &mut buf).unwrap(),
        postgres_types::IsNull::Yes
    ));
}

/// Random bytes and random corruptions of valid values never panic.
#[test]
fn never_panics_on_random_input() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let valid: Vec<Vec<u8>> = vec![
        int4_array(&[2, 2], &[Some(1), None, Some(3), Some(4)]),
        numeric_from_text("-12345.678900"),
        record_raw(&[
            (23, Some(&[0, 0, 0, 1])),
            (1007, Some(&int4_array(&[1], &[Some(5)]))),
        ]),
        inet_raw(
            3,
            64,
            &[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ),
        b"\x01{\"a\":[1,2]}".to_vec(),
    ];
    let types: Vec<Type> = (0..7000).filter_map(Type::from_oid).collect();
    for _ in 0..3000 {
        let raw: Vec<u8> = if rng.bool() {
            (0..rng.usize(0..48)).map(|_| rng.u8(..)).collect()
        } else {
            let mut v = valid[rng.usize(..valid.len())].clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            v.truncate(rng.usize(0..=v.len()));
            v
        };
        for ty in &types {
            let _ = decode(ty, &raw);
        }
    }
}

/// A range's binary form: flags, then each finite bound length-prefixed.
/// A bound is `(value, inclusive)`; `None` is unbounded.
fn int4_range(lower: Option<(i32, bool)>, upper: Option<(i32, bool)>) -> Vec<u8> {
    let mut flags = 0u8;
    let mut body = Vec::new();
    for (bound, inf, inc) in [(lower, 0x08, 0x02), (upper, 0x10, 0x04)] {
        match bound {
            None => flags |= inf,
            Some((v, inclusive)) => {
                if inclusive {
                    flags |= inc;
                }
                body.extend_from_slice(&4i32.to_be_bytes());
                body.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    let mut raw = vec![flags];
    raw.extend_from_slice(&body);
    raw
}

#[test]
fn ranges() {
    let r = int4_range(Some((1, true)), Some((5, false)));
    assert_eq!(dec(&Type::INT4_RANGE, &r), json!("[1,5)"));
    let r2 = int4_range(None, Some((7, true)));
    assert_eq!(dec(&Type::INT4_RANGE, &r2), json!("(,7]"));
    let r3 = int4_range(Some((-3, false)), None);
    assert_eq!(dec(&Type::INT4_RANGE, &r3), json!("(-3,)"));
    assert_eq!(
        dec(&Type::INT4_RANGE, &enc(pt::empty_range_to_sql)),
        json!("empty")
    );
    let mut multi = 2i32.to_be_bytes().to_vec();
    for x in [&r, &r2] {
        multi.extend_from_slice(&(x.len() as i32).to_be_bytes());
        multi.extend_from_slice(x);
    }
    assert_eq!(dec(&Type::INT4MULTI_RANGE, &multi), json!("{[1,5),(,7]}"));
    assert_eq!(
        dec(&Type::INT4MULTI_RANGE, &0i32.to_be_bytes()),
        json!("{}")
    );
    assert!(decode(&Type::INT4_RANGE, &r[..r.len() - 1]).is_err());
    let mut s = String::new();
    super::range_bound_text("a \"b\"", &mut s);
    assert_eq!(s, r#""a ""b""""#);
    let mut s = String::new();
    super::range_bound_text("", &mut s);
    assert_eq!(s, r#""""#);
}
