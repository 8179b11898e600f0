//! Exact arithmetic on PostgreSQL `numeric` values in their binary COPY form: sums of any length
//! and comparisons, with no float and no rounding.
//!
//! A binary numeric is a sign, a weight and base-10000 digits (`value = Σ dᵢ · 10000^(weight−i)`)
//! plus a display scale: exactly what the server stores. The values summed here are those the
//! binary encoder wrote for the records' text (`12.30`, `-0.005`, `1e3` as 1000), so a sum is
//! that of the values the server would have read. As the server's `sum(numeric)` does, a sum
//! keeps the largest display scale of its terms (`12.30 + -0.005 = 12.295`, `1.0 + 2.00 = 3.00`).

use std::cmp::Ordering;

const NBASE: i64 = 10_000;
const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;

/// A numeric read from its binary field (the bytes after the length word).
#[derive(Clone, Copy, Debug)]
pub(super) struct Numeric<'a> {
    negative: bool,
    weight: i16,
    dscale: u16,
    /// Big-endian base-10000 digits, two bytes each.
    digits: &'a [u8],
}

impl<'a> Numeric<'a> {
    /// `None` for a NaN or an infinity (the binary encoder writes neither), a digit out of range,
    /// or a field of the wrong length.
    pub(super) fn parse(field: &'a [u8]) -> Option<Self> {
        let word = |i: usize| {
            field
                .get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (ndigits, weight, sign, dscale) = (word(0)?, word(2)? as i16, word(4)?, word(6)?);
        let digits = field.get(8..)?;
        if digits.len() != usize::from(ndigits) * 2 || dscale > 0x3FFF {
            return None;
        }
        let negative = match sign {
            POSITIVE => false,
            NEGATIVE => true,
            _ => return None,
        };
        if digits
            .chunks_exact(2)
            .any(|d| i64::from(u16::from_be_bytes([d[0], d[1]])) >= NBASE)
        {
            return None;
        }
        Some(Self {
            negative,
            weight,
            dscale,
            digits,
        })
    }

    fn len(&self) -> usize {
        self.digits.len() / 2
    }

    fn digit(&self, i: usize) -> i64 {
        i64::from(u16::from_be_bytes([
            self.digits[2 * i],
            self.digits[2 * i + 1],
        ]))
    }

    /// The digit of weight `w` (0 outside the digits written).
    fn at(&self, w: i32) -> i64 {
        let i = i32::from(self.weight) - w;
        if i < 0 || i as usize >= self.len() {
            0
        } else {
            self.digit(i as usize)
        }
    }

    fn is_zero(&self) -> bool {
        (0..self.len()).all(|i| self.digit(i) == 0)
    }

    /// The value in units of 10^-16, if it has at most 16 places and is below 10^20.
    fn small(&self) -> Option<i128> {
        let low = self.low();
        if low < SMALL_LOW || i32::from(self.weight) > SMALL_HIGH {
            return None;
        }
        let mut v: i128 = 0;
        for i in 0..self.len() {
            v = v * i128::from(NBASE) + i128::from(self.digit(i));
        }
        for _ in SMALL_LOW..low {
            v *= i128::from(NBASE);
        }
        Some(if self.negative { -v } else { v })
    }

    /// The lowest weight written (the weight of the last digit).
    fn low(&self) -> i32 {
        i32::from(self.weight) - self.len() as i32 + 1
    }

    /// Compares values as the server's `numeric` comparison does: by value, whatever the
    /// display scale (`1.0` equals `1.00`).
    pub(super) fn cmp_value(&self, other: &Numeric<'_>) -> Ordering {
        let sign = |n: &Numeric<'_>| match (n.is_zero(), n.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let (a, b) = (sign(self), sign(other));
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        let high = i32::from(self.weight.max(other.weight));
        let low = self.low().min(other.low());
        let magnitude = (low..=high)
            .rev()
            .map(|w| self.at(w).cmp(&other.at(w)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal);
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// The lowest weight the 128-bit part of a [`Sum`] holds: its unit is 10000^-4 = 10^-16.
const SMALL_LOW: i32 = -4;
/// The highest weight of a term added to the 128-bit part: terms stay below 10^20 (10^36
/// units), so that a sum of them overflows only after 10^2 of them at the very least, and
/// `checked_add` then sends the term to the wide part.
const SMALL_HIGH: i32 = 4;

/// An exact running sum of numerics. Terms with at most 16 decimal places and below 10^20 (the
/// usual amounts) are added to a 128-bit integer, with no allocation; any other term, or one
/// that would overflow it, goes to a wide part ([`Wide`]), allocated when first needed.
#[derive(Clone, Debug, Default)]
pub(super) struct Sum {
    /// Part of the sum, in units of 10^-16.
    small: i128,
    dscale: u16,
    /// The rest (boxed: most sums never need it, and every key of a batch holds a `Sum`).
    wide: Option<Box<Wide>>,
}

/// Each weight's digits added as signed integers; the carries are settled once, when the sum is
/// written ([`Sum::write`]).
#[derive(Clone, Debug, Default)]
struct Wide {
    /// `slots[i]` holds the signed total of the digits of weight `low + i`.
    slots: Vec<i64>,
    low: i32,
    /// Terms added since the carries were last settled: a slot moves by less than 10⁴ per term,
    /// so settling every 2⁴⁰ terms keeps every slot far inside an `i64`.
    unsettled: u64,
}

impl Sum {
    pub(super) fn add(&mut self, n: &Numeric<'_>) {
        self.dscale = self.dscale.max(n.dscale);
        if n.len() == 0 {
            return;
        }
        if let Some(sum) = n.small().and_then(|v| self.small.checked_add(v)) {
            self.small = sum;
            return;
        }
        let sign = if n.negative { -1 } else { 1 };
        let wide = self.wide.get_or_insert_with(Box::default);
        wide.add_digits(i32::from(n.weight), (0..n.len()).map(|i| sign * n.digit(i)));
    }

    /// Appends the sum as a binary numeric field (length word included); false, with `out`
    /// possibly extended, when it does not fit the format's weight or digit count.
    pub(super) fn write(&self, out: &mut Vec<u8>) -> bool {
        let Some(wide) = &self.wide else {
            let (digits, n) = small_digits(self.small);
            return write_digits(out, self.small < 0, &digits[..n], SMALL_LOW, self.dscale);
        };
        let mut all = Wide::clone(wide);
        let sign = if self.small < 0 { -1 } else { 1 };
        let (small, n) = small_digits(self.small);
        if n > 0 {
            let high = SMALL_LOW + n as i32 - 1;
            all.add_digits(high, small[..n].iter().rev().map(|d| sign * d));
        }
        let low = all.low;
        let (negative, digits) = all.magnitude();
        write_digits(out, negative, &digits, low, self.dscale)
    }
}

impl Wide {
    /// Adds signed digits, highest first, the first of weight `weight`.
    fn add_digits(&mut self, weight: i32, digits: impl ExactSizeIterator<Item = i64>) {
        self.cover(weight - digits.len() as i32 + 1, weight);
        let top = (weight - self.low) as usize;
        for (i, d) in digits.enumerate() {
            self.slots[top - i] += d;
        }
        self.unsettled += 1;
        if self.unsettled >= 1 << 40 {
            self.settle();
        }
    }

    /// Makes room for the weights `low..=high`.
    fn cover(&mut self, low: i32, high: i32) {
        if self.slots.is_empty() {
            self.low = low;
        }
        if low < self.low {
            let grow = (self.low - low) as usize;
            self.slots.splice(0..0, std::iter::repeat_n(0, grow));
            self.low = low;
        }
        let need = (high - self.low + 1) as usize;
        if self.slots.len() < need {
            self.slots.resize(need, 0);
        }
    }

    /// Carries every slot but the top into `0..10000`; returns the carry out of the top.
    fn carry(&mut self) -> i64 {
        let mut carry = 0;
        for slot in &mut self.slots {
            let v = *slot + carry;
            *slot = v.rem_euclid(NBASE);
            carry = v.div_euclid(NBASE);
        }
        carry
    }

    /// Settles the carries, keeping the value: a negative carry out of the top stays as a
    /// signed top slot.
    fn settle(&mut self) {
        let carry = self.carry();
        if carry != 0 {
            self.slots.push(carry);
        }
        self.unsettled = 0;
    }

    /// The sign and the base-10000 digits (lowest first, each in `0..10000`, the first of weight
    /// `low`), settling every carry.
    fn magnitude(mut self) -> (bool, Vec<i64>) {
        let mut carry = self.carry();
        let negative = carry < 0;
        if negative {
            // value = carry · 10000^len + Σ slots: negate every slot and the carry, settle again.
            for slot in &mut self.slots {
                *slot = -*slot;
            }
            self.slots.push(-carry);
            carry = self.carry();
        }
        while carry > 0 {
            self.slots.push(carry % NBASE);
            carry /= NBASE;
        }
        (negative, self.slots)
    }
}

/// The base-10000 digits of `|v|`, lowest first, and how many there are (a 128-bit value has at
/// most ten).
fn small_digits(v: i128) -> ([i64; 10], usize) {
    let mut magnitude = v.unsigned_abs();
    let mut digits = [0; 10];
    let mut n = 0;
    // 128-bit division is slow: only the digits above 64 bits need it.
    while magnitude > u128::from(u64::MAX) {
        digits[n] = (magnitude % NBASE as u128) as i64;
        magnitude /= NBASE as u128;
        n += 1;
    }
    let mut rest = magnitude as u64;
    while rest > 0 {
        digits[n] = (rest % NBASE as u64) as i64;
        rest /= NBASE as u64;
        n += 1;
    }
    (digits, n)
}

/// Appends a numeric field from its digits (each in `0..10000`, lowest first, the first of
/// weight `low`), leaving out the zero digits at either end.
fn write_digits(out: &mut Vec<u8>, negative: bool, digits: &[i64], low: i32, dscale: u16) -> bool {
    let Some(high) = digits.iter().rposition(|&d| d != 0) else {
        return write_numeric(out, false, 0, dscale, std::iter::empty());
    };
    let first = digits.iter().position(|&d| d != 0).unwrap_or(high);
    let Ok(weight) = i16::try_from(i64::from(low) + high as i64) else {
        return false;
    };
    let significant = digits[first..=high].iter().rev().copied();
    write_numeric(out, negative, weight, dscale, significant)
}

/// Appends a binary numeric field: the length word, the header and the digits (highest first).
fn write_numeric(
    out: &mut Vec<u8>,
    negative: bool,
    weight: i16,
    dscale: u16,
    digits: impl ExactSizeIterator<Item = i64>,
) -> bool {
    let (Ok(ndigits), Ok(len)) = (
        u16::try_from(digits.len()),
        i32::try_from(8 + digits.len() * 2),
    ) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    let sign = if negative { NEGATIVE } else { POSITIVE };
    for word in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for d in digits {
        out.extend_from_slice(&(d as u16).to_be_bytes());
    }
    true
}
