//! The codec against pickles CPython wrote, and against CPython itself.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::walk::OPCODES;
use super::*;

// Pickles written by CPython 3.11 (`pickle.dumps(value, protocol=N)`).
/// `None`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const NONE: [&[u8]; 4] = [b"N.", b"\x80\x02N.", b"\x80\x04N.", b"\x80\x05N."];
/// `True`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const TRUE: [&[u8]; 4] = [
    b"I01\x0a.",
    b"\x80\x02\x88.",
    b"\x80\x04\x88.",
    b"\x80\x05\x88.",
];
/// `5`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const FIVE: [&[u8]; 4] = [
    b"I5\x0a.",
    b"\x80\x02K\x05.",
    b"\x80\x04K\x05.",
    b"\x80\x05K\x05.",
];
/// `-7`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const MINUS7: [&[u8]; 4] = [
    b"I-7\x0a.",
    b"\x80\x02J\xf9\xff\xff\xff.",
    b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00J\xf9\xff\xff\xff.",
    b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00J\xf9\xff\xff\xff.",
];
/// `1180591620717411303424`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const BIG: [&[u8]; 4] = [
    b"L1180591620717411303424L\x0a.",
    b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
    b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
    b"\x80\x05\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
];
/// `1.5`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const FLOAT: [&[u8]; 4] = [
    b"F1.5\x0a.",
    b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.",
    b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
    b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
];
/// `'héllo'`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const STR: [&[u8]; 4] = [
    b"Vh\xe9llo\x0ap0\x0a.",
    b"\x80\x02X\x06\x00\x00\x00h\xc3\xa9lloq\x00.",
    b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x8c\x06h\xc3\xa9llo\x94.",
    b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x8c\x06h\xc3\xa9llo\x94.",
];
/// `b'\x00\x01'`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const BYTES: [&[u8]; 4] = [
    b"c_codecs\x0aencode\x0ap0\x0a(V\x5cu0000\x01\x0ap1\x0aVlatin1\x0ap2\x0atp3\x0aRp4\x0a.",
    b"\x80\x02c_codecs\x0aencode\x0aq\x00X\x02\x00\x00\x00\x00\x01q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
    b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02\x00\x01\x94.",
    b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02\x00\x01\x94.",
];
/// `[1, 'a']`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const LIST: [&[u8]; 4] = [
    b"(lp0\x0aI1\x0aaVa\x0ap1\x0aa.",
    b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01e.",
    b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.",
    b"\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.",
];
/// `(1, 2)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const TUPLE: [&[u8]; 4] = [
    b"(I1\x0aI2\x0atp0\x0a.",
    b"\x80\x02K\x01K\x02\x86q\x00.",
    b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86\x94.",
    b"\x80\x05\x95\x07\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86\x94.",
];
/// `{'a': 1}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const DICT: [&[u8]; 4] = [
    b"(dp0\x0aVa\x0ap1\x0aI1\x0as.",
    b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.",
    b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
    b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
];
/// `{1, 2}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const SET: [&[u8]; 4] = [
    b"c__builtin__\x0aset\x0ap0\x0a((lp1\x0aI1\x0aaI2\x0aatp2\x0aRp3\x0a.",
    b"\x80\x02c__builtin__\x0aset\x0aq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
    b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.",
    b"\x80\x05\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.",
];
/// `frozenset({1, 2})`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const FROZENSET: [&[u8]; 4] = [
    b"c__builtin__\x0afrozenset\x0ap0\x0a((lp1\x0aI1\x0aaI2\x0aatp2\x0aRp3\x0a.",
    b"\x80\x02c__builtin__\x0afrozenset\x0aq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
    b"\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91\x94.",
    b"\x80\x05\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91\x94.",
];
/// `{'k': [(1, b'x'), {'s': None}], 't': (True, -1.5, 'é')}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const NESTED: [&[u8]; 4] = [
    b"(dp0\x0aVk\x0ap1\x0a(lp2\x0a(I1\x0ac_codecs\x0aencode\x0ap3\x0a(Vx\x0ap4\x0aVlatin1\x0ap5\x0atp6\x0aRp7\x0atp8\x0aa(dp9\x0aVs\x0ap10\x0aNsasVt\x0ap11\x0a(I01\x0aF-1.5\x0aV\xe9\x0ap12\x0atp13\x0as.",
    b"\x80\x02}q\x00(X\x01\x00\x00\x00kq\x01]q\x02(K\x01c_codecs\x0aencode\x0aq\x03X\x01\x00\x00\x00xq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x86q\x08}q\x09X\x01\x00\x00\x00sq\x0aNseX\x01\x00\x00\x00tq\x0b\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00\xc3\xa9q\x0c\x87q\x0du.",
    b"\x80\x04\x952\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94]\x94(K\x01C\x01x\x94\x86\x94}\x94\x8c\x01s\x94Nse\x8c\x01t\x94\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x02\xc3\xa9\x94\x87\x94u.",
    b"\x80\x05\x952\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94]\x94(K\x01C\x01x\x94\x86\x94}\x94\x8c\x01s\x94Nse\x8c\x01t\x94\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x02\xc3\xa9\x94\x87\x94u.",
];
/// `b''`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const EMPTY_BYTES: [&[u8]; 4] = [
    b"c__builtin__\x0abytes\x0ap0\x0a(tRp1\x0a.",
    b"\x80\x02c__builtin__\x0abytes\x0aq\x00)Rq\x01.",
    b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00C\x00\x94.",
    b"\x80\x05\x95\x04\x00\x00\x00\x00\x00\x00\x00C\x00\x94.",
];
/// `Empty()`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const QUEUE_EMPTY: [&[u8]; 4] = [
    b"c_queue\x0aEmpty\x0ap0\x0a(tRp1\x0a.",
    b"\x80\x02c_queue\x0aEmpty\x0aq\x00)Rq\x01.",
    b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x06_queue\x94\x8c\x05Empty\x94\x93\x94)R\x94.",
    b"\x80\x05\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x06_queue\x94\x8c\x05Empty\x94\x93\x94)R\x94.",
];
/// `KeyError('k')`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const KEY_ERROR: [&[u8]; 4] = [
    b"cexceptions\x0aKeyError\x0ap0\x0a(Vk\x0ap1\x0atp2\x0aRp3\x0a.",
    b"\x80\x02cexceptions\x0aKeyError\x0aq\x00X\x01\x00\x00\x00kq\x01\x85q\x02Rq\x03.",
    b"\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94.",
    b"\x80\x05\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94.",
];
/// `ValueError('bad', 3)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const VALUE_ERROR: [&[u8]; 4] = [
    b"cexceptions\x0aValueError\x0ap0\x0a(Vbad\x0ap1\x0aI3\x0atp2\x0aRp3\x0a.",
    b"\x80\x02cexceptions\x0aValueError\x0aq\x00X\x03\x00\x00\x00badq\x01K\x03\x86q\x02Rq\x03.",
    b"\x80\x04\x95'\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x03bad\x94K\x03\x86\x94R\x94.",
    b"\x80\x05\x95'\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x03bad\x94K\x03\x86\x94R\x94.",
];
/// `datetime.datetime(2020, 1, 1, 0, 0)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
const DATETIME: [&[u8]; 4] = [
    b"cdatetime\x0adatetime\x0ap0\x0a(c_codecs\x0aencode\x0ap1\x0a(V\x07\xe4\x01\x01\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x0ap2\x0aVlatin1\x0ap3\x0atp4\x0aRp5\x0atp6\x0aRp7\x0a.",
    b"\x80\x02cdatetime\x0adatetime\x0aq\x00c_codecs\x0aencode\x0aq\x01X\x0b\x00\x00\x00\x07\xc3\xa4\x01\x01\x00\x00\x00\x00\x00\x00q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.",
    b"\x80\x04\x95*\x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x08datetime\x94\x93\x94C\x0a\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x94\x85\x94R\x94.",
    b"\x80\x05\x95*\x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x08datetime\x94\x93\x94C\x0a\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x94\x85\x94R\x94.",
];
/// a `KeyError('k')` with an attribute (`BUILD` with a dict), protocol 2.
const KEY_ERROR_WITH_STATE: &[u8] = b"\x80\x02cexceptions\x0aKeyError\x0aq\x00X\x01\x00\x00\x00kq\x01\x85q\x02Rq\x03}q\x04X\x06\x00\x00\x00detailq\x05K\x01sb.";
/// a `ValueError('v')` with a note, protocol 4.
const VALUE_ERROR_WITH_NOTE: &[u8] = b"\x80\x04\x95:\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x01v\x94\x85\x94R\x94}\x94\x8c\x09__notes__\x94]\x94\x8c\x01n\x94asb.";
/// `multiprocessing.managers.RemoteError('tb')`, protocol 2.
const REMOTE_ERROR: &[u8] = b"\x80\x02cmultiprocessing.managers\x0aRemoteError\x0aq\x00X\x02\x00\x00\x00tbq\x01\x85q\x02Rq\x03.";
/// `('#ERROR', KeyError('k'))`, a manager's reply, protocol 4.
const ERROR_REPLY: &[u8] = b"\x80\x04\x95,\x00\x00\x00\x00\x00\x00\x00\x8c\x06#ERROR\x94\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94\x86\x94.";
/// `('#PROXY', (['get', 'put'], Token('Inbox', ('127.0.0.1', 5000),
/// '7f00aa')))`, a manager's reply, protocol 4.
const PROXY_REPLY: &[u8] = b"\x80\x04\x95k\x00\x00\x00\x00\x00\x00\x00\x8c\x06#PROXY\x94]\x94(\x8c\x03get\x94\x8c\x03put\x94e\x8c\x18multiprocessing.managers\x94\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x05Inbox\x94\x8c\x09127.0.0.1\x94M\x88\x13\x86\x94\x8c\x067f00aa\x94\x87\x94b\x86\x94\x86\x94.";
/// `collections.OrderedDict(a=1)`, protocol 4.
const ORDERED_DICT: &[u8] = b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.";
/// an instance of a user class `__main__.Point`, protocol 0.
const POINT_0: &[u8] = b"ccopy_reg\x0a_reconstructor\x0ap0\x0a(c__main__\x0aPoint\x0ap1\x0ac__builtin__\x0aobject\x0ap2\x0aNtp3\x0aRp4\x0a(dp5\x0aVx\x0ap6\x0aI1\x0asb.";
/// an instance of a user class `__main__.Point`, protocol 2.
const POINT_2: &[u8] =
    b"\x80\x02c__main__\x0aPoint\x0aq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xq\x03K\x01sb.";
/// an instance of a user class `__main__.Point`, protocol 4.
const POINT_4: &[u8] = b"\x80\x04\x95#\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x05Point\x94\x93\x94)\x81\x94}\x94\x8c\x01x\x94K\x01sb.";
/// `[x, x, x]` for `x = [1, 2, 3]`: a list fetched from the memo, protocol 4.
const SHARED: &[u8] =
    b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x01K\x02K\x03eh\x01h\x01e.";
/// `l` after `l.append(l)`, protocol 4.
const RECURSIVE: &[u8] = b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a.";

/// The payload of the 70 KiB pickles: `bytes(range(256)) * 280`.
fn big_payload() -> Vec<u8> {
    (0..280).flat_map(|_| 0..=255u8).collect()
}

/// CPython's pickles of `bytes(range(256)) * 280` at protocols 2, 4 and
/// 5 (their headers and tails pasted, the payload made here). Protocol 4
/// and 5 write it as `BINBYTES` outside any frame, not `BINBYTES8`.
fn big_pickles() -> [Vec<u8>; 3] {
    let payload = big_payload();
    let latin1: String = payload.iter().map(|&b| char::from(b)).collect();
    let mut p2 = b"\x80\x02c_codecs\nencode\nq\x00X".to_vec();
    p2.extend_from_slice(&(latin1.len() as u32).to_le_bytes());
    p2.extend_from_slice(latin1.as_bytes());
    p2.extend_from_slice(b"q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.");
    let binbytes = |proto: u8| {
        let mut p = vec![0x80, proto, b'B'];
        p.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        p.extend_from_slice(&payload);
        p.extend_from_slice(b"\x94.");
        p
    };
    [p2, binbytes(4), binbytes(5)]
}

/// Decodes each of a value's four pickles into a `T`, expecting `want`.
fn each<T: DeserializeOwned + PartialEq + Debug>(pickles: [&[u8]; 4], want: T) {
    for (proto, bytes) in [0, 2, 4, 5].into_iter().zip(pickles) {
        let got: T = loads(bytes).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert_eq!(got, want, "protocol {proto}");
    }
}

/// The message of an `Error::Decode`, failing on any other outcome.
fn decode_error<T: DeserializeOwned + Debug>(bytes: &[u8]) -> String {
    match loads::<T>(bytes) {
        Err(Error::Decode(message)) => message,
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}

/// The class and message of an `Error::Python`.
fn python_error(bytes: &[u8]) -> (String, String) {
    match loads::<Value>(bytes) {
        Err(Error::Python { class, message }) => (class, message),
        other => panic!("expected Error::Python, got {other:?}"),
    }
}

#[test]
fn scalars_from_cpython() {
    each(NONE, ());
    each(NONE, None::<i32>);
    each(TRUE, true);
    each(FIVE, 5i64);
    each(FIVE, 5u8);
    each(FIVE, Some(5u32));
    each(MINUS7, -7i32);
    each(FLOAT, 1.5f64);
    each(STR, "héllo".to_string());
    each(BYTES, ByteBuf::from(vec![0, 1]));
    each(EMPTY_BYTES, ByteBuf::new());
}

#[test]
fn python_bytes_do_not_fill_a_vec_of_u8() {
    for bytes in BYTES {
        decode_error::<Vec<u8>>(bytes);
    }
}

#[test]
fn big_ints_are_refused_through_serde_but_kept_as_values() {
    for bytes in BIG {
        assert!(decode_error::<i64>(bytes).contains("integer too large"));
        assert!(decode_error::<u64>(bytes).contains("integer too large"));
        decode_error::<u128>(bytes);
        decode_error::<i128>(bytes);
        decode_error::<Value>(bytes);
        // serde-pickle's own value reader keeps it.
        let value = serde_pickle::value_from_slice(bytes, DeOptions::new()).unwrap();
        assert_eq!(value.to_string(), "1180591620717411303424");
    }
}

#[test]
fn containers_from_cpython() {
    each(LIST, (1i64, "a".to_string()));
    each(TUPLE, (1i32, 2i32));
    each(TUPLE, vec![1i32, 2]);
    each(DICT, HashMap::from([("a".to_string(), 1i32)]));
    each(SET, BTreeSet::from([1i32, 2]));
    each(SET, HashSet::from([1i32, 2]));
    each(FROZENSET, BTreeSet::from([1i32, 2]));
    each(FROZENSET, vec![1i32, 2]);

    #[derive(Debug, PartialEq, Deserialize)]
    struct Nested {
        k: ((i64, ByteBuf), HashMap<String, Option<i32>>),
        t: (bool, f64, String),
    }
    each(
        NESTED,
        Nested {
            k: (
                (1, ByteBuf::from(b"x".to_vec())),
                HashMap::from([("s".to_string(), None)]),
            ),
            t: (true, -1.5, "é".to_string()),
        },
    );
    assert_eq!(
        loads::<Vec<Vec<i32>>>(SHARED).unwrap(),
        vec![vec![1, 2, 3]; 3]
    );
}

#[test]
fn seventy_kib_of_bytes() {
    for bytes in big_pickles() {
        let got: ByteBuf = loads(&bytes).unwrap();
        assert_eq!(got.into_vec(), big_payload());
    }
}

#[test]
fn exceptions_from_cpython() {
    for bytes in QUEUE_EMPTY {
        assert_eq!(python_error(bytes), ("_queue.Empty".into(), "".into()));
    }
    for bytes in KEY_ERROR {
        assert_eq!(
            python_error(bytes),
            ("builtins.KeyError".into(), "'k'".into())
        );
    }
    for bytes in VALUE_ERROR {
        let want = ("builtins.ValueError".into(), "('bad', 3)".into());
        assert_eq!(python_error(bytes), want);
    }
    let key_error = ("builtins.KeyError".into(), "'k'".into());
    assert_eq!(python_error(KEY_ERROR_WITH_STATE), key_error);
    let value_error = ("builtins.ValueError".into(), "v".into());
    assert_eq!(python_error(VALUE_ERROR_WITH_NOTE), value_error);
    let remote = ("multiprocessing.managers.RemoteError".into(), "tb".into());
    assert_eq!(python_error(REMOTE_ERROR), remote);
    // Whatever T the caller wanted.
    assert!(matches!(
        loads::<()>(KEY_ERROR[0]),
        Err(Error::Python { .. })
    ));
    let shown = loads::<()>(QUEUE_EMPTY[2]).unwrap_err().to_string();
    assert_eq!(shown, "Python raised _queue.Empty: ");
}

#[test]
fn other_classes_are_refused_by_name() {
    for bytes in DATETIME {
        let message = decode_error::<Value>(bytes);
        assert_eq!(
            message,
            "a pickle of class datetime.datetime is not plain data"
        );
    }
    let message = decode_error::<Value>(ORDERED_DICT);
    assert!(message.contains("collections.OrderedDict"), "{message}");
    for bytes in [POINT_0, POINT_2, POINT_4] {
        let message = decode_error::<Value>(bytes);
        assert!(message.contains("__main__.Point"), "{message}");
    }
    // An exception is only an error at the top; inside data it is refused.
    let message = decode_error::<(String, Value)>(ERROR_REPLY);
    assert!(message.contains("builtins.KeyError"), "{message}");
    let message = decode_error::<Value>(RECURSIVE);
    assert!(message.contains("recursive"), "{message}");
    // A token outside a manager's reply is refused too.
    let message = decode_error::<Value>(PROXY_REPLY);
    assert!(
        message.contains("multiprocessing.managers.Token"),
        "{message}"
    );
    assert!(matches!(loads_reply(PROXY_REPLY), Ok((kind, Ok(_))) if kind == "#PROXY"));
    // `list` is known for a list only; anything else is an error, not a call.
    let message = decode_error::<Value>(b"\x80\x02c__builtin__\nlist\nX\x02\x00\x00\x00ab\x85R.");
    assert!(message.contains("list() arg"), "{message}");
}

#[test]
fn dumps_exception_reads_back() {
    let cases: [(&str, &[&str], &str); 5] = [
        ("_queue.Empty", &[], ""),
        ("builtins.KeyError", &["k"], "'k'"),
        (
            "IndexError",
            &["list index out of range"],
            "list index out of range",
        ),
        ("builtins.ValueError", &["a", "b"], "('a', 'b')"),
        (
            "builtins.ValueError",
            &["a", "b", "c", "d"],
            "('a', 'b', 'c', 'd')",
        ),
    ];
    for (class, args, message) in cases {
        let (got_class, got_message) = python_error(&dumps_exception(class, args));
        let want_class = if class.contains('.') {
            class.to_string()
        } else {
            format!("builtins.{class}")
        };
        assert_eq!((got_class, got_message.as_str()), (want_class, message));
    }
    let bytes = dumps_exception("_queue.Empty", &[]);
    assert_eq!(bytes, b"\x80\x03c_queue\nEmpty\n)R.");
}

#[test]
fn dumps_refuses_what_python_lacks() {
    assert!(matches!(dumps(&1i128), Err(Error::Encode(_))));
    assert!(matches!(dumps(&u128::MAX), Err(Error::Encode(_))));
}

#[test]
fn dumps_round_trips_through_loads() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum E {
        A,
        B(i32),
        C { x: i32 },
    }
    let value = (
        vec![E::A, E::B(1), E::C { x: 2 }],
        ByteBuf::from(vec![0, 1]),
        "é",
    );
    let back: (Vec<E>, ByteBuf, String) = loads(&dumps(&value).unwrap()).unwrap();
    assert_eq!((back.0, back.1, back.2.as_str()), value);
    let max: u64 = loads(&dumps(&i64::MAX).unwrap()).unwrap();
    assert_eq!(max, i64::MAX as u64);
    // Written, but beyond i64 when read back.
    assert!(matches!(
        loads::<u64>(&dumps(&u64::MAX).unwrap()),
        Err(Error::Decode(_))
    ));
}

/// Every pickle the tests hold.
fn samples() -> Vec<Vec<u8>> {
    let fours = [
        NONE,
        TRUE,
        FIVE,
        MINUS7,
        BIG,
        FLOAT,
        STR,
        BYTES,
        LIST,
        TUPLE,
        DICT,
        SET,
        FROZENSET,
        NESTED,
        EMPTY_BYTES,
        QUEUE_EMPTY,
        KEY_ERROR,
        VALUE_ERROR,
        DATETIME,
    ];
    let ones = [
        KEY_ERROR_WITH_STATE,
        VALUE_ERROR_WITH_NOTE,
        REMOTE_ERROR,
        ERROR_REPLY,
        PROXY_REPLY,
        ORDERED_DICT,
        POINT_0,
        POINT_2,
        POINT_4,
        SHARED,
        RECURSIVE,
    ];
    let mut all: Vec<Vec<u8>> = fours.iter().flatten().map(|b| b.to_vec()).collect();
    all.extend(ones.iter().map(|b| b.to_vec()));
    all.push(dumps_exception(
        "builtins.ValueError",
        &["a", "b", "c", "d"],
    ));
    all
}

#[test]
fn every_truncation_is_a_decode_error() {
    for sample in samples() {
        for len in 0..sample.len() {
            let cut = &sample[..len];
            assert!(
                matches!(loads::<Value>(cut), Err(Error::Decode(_))),
                "{cut:?} of {sample:?}"
            );
        }
    }
    for bytes in big_pickles() {
        for len in [
            0,
            1,
            2,
            3,
            7,
            100,
            bytes.len() / 2,
            bytes.len() - 2,
            bytes.len() - 1,
        ] {
            assert!(matches!(
                loads::<ByteBuf>(&bytes[..len]),
                Err(Error::Decode(_))
            ));
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for sample in samples() {
        for i in 0..sample.len() {
            for mask in [0x01, 0x02, 0x10, 0x40, 0x80, 0xff] {
                let mut bytes = sample.clone();
                bytes[i] ^= mask;
                let _ = loads::<Value>(&bytes);
                let _ = loads::<(String, i64)>(&bytes);
                let _ = loads_reply(&bytes);
            }
        }
    }
}

#[test]
fn random_opcodes_never_panic() {
    // xorshift64, seeded: the same inputs on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 48) as usize;
        let mut bytes = vec![0x80, 4];
        for _ in 0..len {
            let r = next();
            bytes.push(if r % 4 == 0 {
                (r >> 8) as u8
            } else {
                OPCODES[(r >> 8) as usize % OPCODES.len()].code
            });
        }
        bytes.push(b'.');
        let _ = loads::<Value>(&bytes);
        let _ = loads_reply(&bytes);
    }
}

#[test]
fn forged_lengths_are_refused_before_reading() {
    let forged: [&[u8]; 7] = [
        b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.",
        b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x01abc.",
        b"\x80\x04\x96\xff\xff\xff\xff\xff\xff\xff\x7f.",
        b"\x80\x02\x8b\xff\xff\xff\xff.",
        b"\x80\x02T\xff\xff\xff\xff.",
        b"\x80\x02X\x00\x00\x00\x80.",
        b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.",
    ];
    for bytes in forged {
        let message = decode_error::<Value>(bytes);
        assert!(message.starts_with("truncated pickle"), "{message}");
    }
    assert!(decode_error::<Value>(b"\x80\x06N.").contains("protocol 6"));
    assert!(decode_error::<Value>(b"N.x").contains("after the pickle's STOP"));
    assert!(decode_error::<Value>(b"\x80\x02\x99.").contains("0x99"));
}

#[test]
fn expansion_through_the_memo_is_bounded() {
    // A list of two references to the list before it, 64 times over.
    let mut bomb = b"\x80\x02]q\x00".to_vec();
    for id in 1..64u8 {
        bomb.extend_from_slice(&[b'(', b'h', id - 1, b'h', id - 1, b'l', b'q', id]);
    }
    bomb.push(b'.');
    assert!(decode_error::<Value>(&bomb).contains("expand"));

    // A list of 1000 items copied by DUP 100 000 times.
    let mut dups = b"\x80\x02](".to_vec();
    dups.extend(std::iter::repeat_n(b'N', 1000));
    dups.push(b'e');
    dups.extend(std::iter::repeat_n(b'2', 100_000));
    dups.push(b'.');
    assert!(decode_error::<Value>(&dups).contains("expand"));
}

#[test]
fn nesting_is_bounded() {
    let mut marks = vec![0x80, 2];
    marks.extend(std::iter::repeat_n(b'(', 100_000));
    marks.push(b'.');
    assert!(decode_error::<Value>(&marks).contains("deeper"));

    let nested = |depth: usize| {
        let mut lists = vec![0x80, 2];
        lists.extend(std::iter::repeat_n(b']', depth));
        lists.extend(std::iter::repeat_n(b'a', depth - 1));
        lists.push(b'.');
        lists
    };
    assert!(decode_error::<Value>(&nested(100_000)).contains("deeper"));
    assert!(loads::<Value>(&nested(MAX_DEPTH as usize)).is_ok());
    assert!(decode_error::<Value>(&nested(MAX_DEPTH as usize + 2)).contains("deeper"));
}

#[test]
fn reprs_follow_python() {
    let mut s = String::new();
    let cases = [
        (Value::F64(1e16), "1e+16"),
        (Value::F64(1.5e-5), "1.5e-05"),
        (Value::F64(100.0), "100.0"),
        (Value::F64(f64::NAN), "nan"),
        (Value::String("it's".into()), "\"it's\""),
        (Value::String("a'\"\n\u{1}".into()), "'a\\'\"\\n\\x01'"),
        (Value::Bytes(b"\x00'x".to_vec()), "b\"\\x00'x\""),
        (Value::Tuple(vec![Value::None]), "(None,)"),
        (Value::Set(Default::default()), "set()"),
    ];
    for (value, want) in cases {
        s.clear();
        repr(&value, &mut s);
        assert_eq!(s, want);
    }
}

/// Runs `python3 -c script args...` with `input` on its stdin, and gives
/// its stdout; `None` (saying why) when there is no `python3` to run.
/// Fails if it runs more than 20 s or exits with an error.
fn python(script: &str, args: &[&str], input: Vec<u8>) -> Option<Vec<u8>> {
    let spawned = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipped: cannot run python3: {e}");
            return None;
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut out = String::new();
        stderr.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("python3 ran for more than 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    writer.join().unwrap().unwrap();
    let out = reader.join().unwrap().unwrap();
    let err = errors.join().unwrap().unwrap();
    assert!(status.success(), "python3 failed: {err}");
    Some(out)
}

/// Length-prefixed pickles, for the scripts.
fn frames(pickles: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pickles {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Prints, a line each, the repr of every pickle in its stdin's frames
/// (`module.Name(args)` for an exception, the length for a long value).
const SHOW: &str = r#"
import pickle, struct, sys
data = sys.stdin.buffer.read()
i = 0
while i < len(data):
    (n,) = struct.unpack_from('<I', data, i)
    v = pickle.loads(data[i + 4:i + 4 + n])
    i += 4 + n
    if isinstance(v, BaseException):
        r = f'{type(v).__module__}.{type(v).__qualname__}{v.args!r}'
    else:
        r = repr(v)
        if len(r) > 200:
            r = f'<{type(v).__name__} of {len(v)}>'
    sys.stdout.buffer.write(r.encode('utf-8') + b'\n')
"#;

#[test]
fn python_reads_what_dumps_writes() {
    #[derive(Serialize)]
    struct Unit;
    #[derive(Serialize)]
    struct Newtype(i32);
    #[derive(Serialize)]
    struct Pair(i32, i32);
    #[derive(Serialize)]
    struct S {
        x: i32,
        y: &'static str,
    }
    #[derive(Serialize)]
    enum E {
        A,
        B(i32),
        C { x: i32 },
        D(i32, i32),
    }
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (dumps(&()).unwrap(), "None"),
        (dumps(&None::<i32>).unwrap(), "None"),
        (dumps(&Some(5)).unwrap(), "5"),
        (dumps(&true).unwrap(), "True"),
        (dumps(&-7i64).unwrap(), "-7"),
        (dumps(&u64::MAX).unwrap(), "18446744073709551615"),
        (dumps(&i64::MIN).unwrap(), "-9223372036854775808"),
        (dumps(&1.5f64).unwrap(), "1.5"),
        (dumps(&0.1f32).unwrap(), "0.10000000149011612"),
        (dumps(&f64::NEG_INFINITY).unwrap(), "-inf"),
        (dumps("héllo").unwrap(), "'héllo'"),
        (dumps(&'é').unwrap(), "'é'"),
        (dumps(&ByteBuf::from(vec![0, 1])).unwrap(), "b'\\x00\\x01'"),
        (dumps(serde_bytes::Bytes::new(b"")).unwrap(), "b''"),
        (
            dumps(&ByteBuf::from(big_payload())).unwrap(),
            "<bytes of 71680>",
        ),
        (dumps(&vec![0u8, 1]).unwrap(), "[0, 1]"),
        (dumps(&[0u8; 3]).unwrap(), "(0, 0, 0)"),
        (dumps(&(1, "a")).unwrap(), "(1, 'a')"),
        (dumps(&(1,)).unwrap(), "(1,)"),
        (dumps(&Vec::<i32>::new()).unwrap(), "[]"),
        (dumps(&HashMap::from([("a", 1)])).unwrap(), "{'a': 1}"),
        (
            dumps(&BTreeMap::from([(1, "x"), (2, "y")])).unwrap(),
            "{1: 'x', 2: 'y'}",
        ),
        (dumps(&BTreeSet::from([1, 2])).unwrap(), "[1, 2]"),
        (dumps(&HashSet::from([7])).unwrap(), "[7]"),
        (dumps(&Unit).unwrap(), "None"),
        (dumps(&Newtype(1)).unwrap(), "1"),
        (dumps(&Pair(1, 2)).unwrap(), "(1, 2)"),
        (dumps(&S { x: 1, y: "z" }).unwrap(), "{'x': 1, 'y': 'z'}"),
        (dumps(&E::A).unwrap(), "'A'"),
        (dumps(&E::B(1)).unwrap(), "{'B': 1}"),
        (dumps(&E::C { x: 1 }).unwrap(), "{'C': {'x': 1}}"),
        (dumps(&E::D(1, 2)).unwrap(), "{'D': [1, 2]}"),
        (
            dumps(&vec![
                (1, ByteBuf::from(b"x".to_vec())),
                (2, ByteBuf::new()),
            ])
            .unwrap(),
            "[(1, b'x'), (2, b'')]",
        ),
    ];
    let exceptions = vec![
        (dumps_exception("_queue.Empty", &[]), "_queue.Empty()"),
        (dumps_exception("queue.Full", &[]), "queue.Full()"),
        (
            dumps_exception("builtins.KeyError", &["k"]),
            "builtins.KeyError('k',)",
        ),
        (
            dumps_exception("builtins.IndexError", &["list index out of range"]),
            "builtins.IndexError('list index out of range',)",
        ),
        (
            dumps_exception("multiprocessing.managers.RemoteError", &["tb\n"]),
            "multiprocessing.managers.RemoteError('tb\\n',)",
        ),
        (
            dumps_exception("builtins.ValueError", &["a", "b", "c", "d"]),
            "builtins.ValueError('a', 'b', 'c', 'd')",
        ),
    ];
    let all: Vec<_> = cases.into_iter().chain(exceptions).collect();
    let pickles: Vec<Vec<u8>> = all.iter().map(|(p, _)| p.clone()).collect();
    let Some(out) = python(SHOW, &[], frames(&pickles)) else {
        return;
    };
    let out = String::from_utf8(out).unwrap();
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<&str> = all.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
}

/// Writes, as frames, the pickle at protocols 0 to 5 of each expression
/// in its arguments.
const WRITE: &str = r#"
import collections, datetime, decimal, fractions, pickle, queue, struct, sys
import multiprocessing.managers, multiprocessing.reduction
class Point:
    pass
def point():
    p = Point()
    p.x = 1
    return p
for expr in sys.argv[1:]:
    v = eval(expr)
    for proto in range(6):
        p = multiprocessing.reduction.ForkingPickler.dumps(v, protocol=proto)
        sys.stdout.buffer.write(struct.pack('<I', len(p)) + p)
"#;

/// How a pickle from Python is checked.
type Check = Box<dyn Fn(Result<()>, &[u8])>;

/// A check that the pickle decodes into `want`.
fn value<T: DeserializeOwned + PartialEq + Debug + 'static>(want: T) -> Check {
    Box::new(move |_, bytes| assert_eq!(loads::<T>(bytes).unwrap(), want))
}

/// A check that the pickle is the exception `class` with `message`.
fn raised(class: &'static str, message: &'static str) -> Check {
    Box::new(move |result, _| match result {
        Err(Error::Python {
            class: c,
            message: m,
        }) => assert_eq!((&*c, &*m), (class, message)),
        other => panic!("expected {class}, got {other:?}"),
    })
}

/// A check that the pickle is refused as holding an object of `class`.
fn refused(class: &'static str) -> Check {
    Box::new(move |result, _| match result {
        Err(Error::Decode(m)) => assert!(m.contains(class), "{m}"),
        other => panic!("expected {class} refused, got {other:?}"),
    })
}

#[test]
fn loads_reads_what_python_writes() {
    let cases: Vec<(&str, Check)> = vec![
        ("None", value(())),
        ("(True, False)", value((true, false))),
        ("2**62", value(1i64 << 62)),
        ("-2**31 - 1", value(-(1i64 << 31) - 1)),
        ("1e300", value(1e300f64)),
        ("'h\\xe9llo\\n\\\\'", value("héllo\n\\".to_string())),
        ("'\\u20ac' * 70000", value("€".repeat(70_000))),
        ("b''", value(ByteBuf::new())),
        (
            "bytes(range(256)) * 280",
            value(ByteBuf::from(big_payload())),
        ),
        ("bytearray(b'xy')", value(ByteBuf::from(b"xy".to_vec()))),
        (
            "{1: [b'a', None], 2: []}",
            value(BTreeMap::from([
                (1i64, vec![Some(ByteBuf::from(b"a".to_vec())), None]),
                (2, vec![]),
            ])),
        ),
        (
            "{frozenset({1}), frozenset()}",
            value(BTreeSet::from([BTreeSet::new(), BTreeSet::from([1i64])])),
        ),
        ("list(range(2500))", value((0..2500i64).collect::<Vec<_>>())),
        (
            "{str(i): i for i in range(1500)}",
            value(
                (0..1500i64)
                    .map(|i| (i.to_string(), i))
                    .collect::<HashMap<_, _>>(),
            ),
        ),
        ("[[1, 2, 3]] * 3", value(vec![vec![1i64, 2, 3]; 3])),
        // A manager pickles a dict's views as a call of `list`.
        (
            "{'a': 1, 'b': 2}.items()",
            value(vec![("a".to_string(), 1i64), ("b".to_string(), 2)]),
        ),
        ("{'a': 1, 'b': 2}.values()", value(vec![1i64, 2])),
        ("queue.Empty()", raised("_queue.Empty", "")),
        ("queue.Full()", raised("queue.Full", "")),
        ("KeyError('k')", raised("builtins.KeyError", "'k'")),
        ("KeyError(1)", raised("builtins.KeyError", "1")),
        (
            "IndexError('list index out of range')",
            raised("builtins.IndexError", "list index out of range"),
        ),
        (
            "ValueError('bad', 3)",
            raised("builtins.ValueError", "('bad', 3)"),
        ),
        ("StopIteration()", raised("builtins.StopIteration", "")),
        (
            "multiprocessing.managers.RemoteError('tb')",
            raised("multiprocessing.managers.RemoteError", "tb"),
        ),
        (
            "datetime.datetime(2020, 1, 1)",
            refused("datetime.datetime"),
        ),
        (
            "collections.OrderedDict(a=1)",
            refused("collections.OrderedDict"),
        ),
        ("fractions.Fraction(1, 3)", refused("fractions.Fraction")),
        ("decimal.Decimal('1.5')", refused("decimal.Decimal")),
        ("point()", refused("__main__.Point")),
        // A token is only read in a manager's #PROXY reply.
        (
            "multiprocessing.managers.Token('Inbox', ('127.0.0.1', 1), 'ab')",
            refused("multiprocessing.managers.Token"),
        ),
        ("('#ERROR', KeyError('k'))", refused("builtins.KeyError")),
    ];
    let exprs: Vec<&str> = cases.iter().map(|(e, _)| *e).collect();
    let Some(out) = python(WRITE, &exprs, Vec::new()) else {
        return;
    };
    let mut rest = &out[..];
    for (expr, check) in &cases {
        for proto in 0..6 {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
            let (bytes, tail) = tail.split_at(len);
            rest = tail;
            let result = loads::<serde::de::IgnoredAny>(bytes).map(|_| ());
            eprintln!("{expr} at protocol {proto}");
            check(result, bytes);
        }
    }
    assert!(rest.is_empty());
}

/// CPython 3.11's pickles (protocol 4) of values, and the same values
/// from Rust: a manager serving Python programs stores both as the same
/// canonical bytes, so a dict key put by one is found by the other.
#[test]
fn python_and_rust_values_have_one_canonical_pickle() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    let from_python = |h: &str| super::canonical_of(&super::loads_value(&hex(h)).unwrap()).unwrap();
    assert_eq!(
        from_python("80049505000000000000008c0161942e"),
        super::canonical(&"a").unwrap()
    );
    assert_eq!(from_python("80044b052e"), super::canonical(&5i64).unwrap());
    assert_eq!(
        from_python("80049506000000000000004af9ffffff2e"),
        super::canonical(&-7i32).unwrap()
    );
    assert_eq!(
        from_python("80049509000000000000004b018c01789486942e"),
        super::canonical(&(1u8, "x")).unwrap()
    );
    assert_eq!(
        from_python("8004950a000000000000004740040000000000002e"),
        super::canonical(&2.5f64).unwrap()
    );
    assert_eq!(
        from_python("80044e2e"),
        super::canonical(&None::<i64>).unwrap()
    );
    assert_eq!(from_python("8004882e"), super::canonical(&true).unwrap());
    assert_eq!(
        from_python("80049509000000000000005d94284b014b02652e"),
        super::canonical(&vec![1, 2]).unwrap()
    );
    let map: std::collections::BTreeMap<&str, (i64, i64)> = [("k", (1, 2))].into();
    assert_eq!(
        from_python("8004950e000000000000007d948c016b944b014b028694732e"),
        super::canonical(&map).unwrap()
    );
    // A tuple stays a tuple (serde's data model would make it a list).
    assert!(matches!(
        super::loads_value(&hex("80049509000000000000004b018c01789486942e")).unwrap(),
        serde_pickle::Value::Tuple(_)
    ));
}

/// Writes `('#PROXY', (exposed, token))` replies at protocols 2 to 5, as a
/// manager does, then forged ones: a token made with arguments, a token
/// whose state holds a class instance, another class made by `NEWOBJ`, a
/// token in a reply other than `#PROXY`.
const WRITE_TOKENS: &str = r#"
import copyreg, datetime, pickle, struct, sys
from multiprocessing.managers import Token
from multiprocessing.reduction import ForkingPickler

def out(p):
    sys.stdout.buffer.write(struct.pack('<I', len(p)) + p)

token = Token('Inbox', ('127.0.0.1', 5000), '7f00aa')
for proto in range(2, 6):
    out(bytes(ForkingPickler.dumps(('#PROXY', (['get', 'put'], token)), protocol=proto)))

class Forged(pickle.Pickler):
    def __init__(self, f, make):
        super().__init__(f, protocol=4)
        self.make = make
    def reducer_override(self, obj):
        return self.make(obj) if isinstance(obj, Token) else NotImplemented

import io
def forged(make):
    f = io.BytesIO()
    Forged(f, make).dump(('#PROXY', (['get'], token)))
    out(f.getvalue())

forged(lambda t: (copyreg.__newobj__, (Token, 'x'), ('Inbox', None, 'ab')))
forged(lambda t: (copyreg.__newobj__, (Token,), ('Inbox', datetime.datetime(2020, 1, 1), 'ab')))

class Impostor:
    pass

impostor = Impostor()
impostor.typeid = 'Inbox'
out(bytes(ForkingPickler.dumps(('#PROXY', (['get'], impostor)), protocol=4)))
out(bytes(ForkingPickler.dumps(('#RETURN', token), protocol=4)))
"#;

#[test]
fn a_proxy_reply_reads_its_token_and_nothing_else_is_made() {
    let Some(out) = python(WRITE_TOKENS, &[], Vec::new()) else {
        return;
    };
    let mut pickles = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let (bytes, tail) = tail.split_at(len);
        pickles.push(bytes.to_vec());
        rest = tail;
    }
    assert_eq!(pickles.len(), 8);
    for bytes in &pickles[..4] {
        let (kind, value) = loads_reply(bytes).unwrap();
        assert_eq!(kind, "#PROXY");
        let want = Value::Tuple(vec![
            Value::List(vec![
                Value::String("get".into()),
                Value::String("put".into()),
            ]),
            Value::Tuple(vec![
                Value::Tuple(vec![Value::None, Value::Tuple(vec![])]),
                Value::Tuple(vec![
                    Value::String("Inbox".into()),
                    Value::Tuple(vec![Value::String("127.0.0.1".into()), Value::I64(5000)]),
                    Value::String("7f00aa".into()),
                ]),
            ]),
        ]);
        assert_eq!(value.unwrap(), want);
    }
    for (bytes, names) in pickles[4..].iter().zip([
        "multiprocessing.managers.Token",
        "datetime.datetime",
        "__main__.Impostor",
        "multiprocessing.managers.Token",
    ]) {
        let message = match loads_reply(bytes) {
            Err(Error::Decode(message)) => message,
            other => panic!("{names}: {other:?}"),
        };
        assert!(message.contains(names), "{message}");
    }
}
