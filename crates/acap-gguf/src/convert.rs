//! Half-precision conversions, bit-exact with ggml (round to nearest, ties to even).

/// Converts IEEE binary16 bits to f32: exact for every number; NaN stays NaN with its payload
/// and comes out quiet, as the hardware conversion ggml uses on x86 (F16C) does.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from((bits >> 10) & 0x1f);
    let man = u32::from(bits & 0x03ff);
    let magnitude = match exp {
        // Zero and subnormals: man * 2^-24, exact in f32.
        0 => (man as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        0x1f if man == 0 => 0x7f80_0000,
        0x1f => 0x7fc0_0000 | (man << 13),
        // Normal: rebias the exponent from 15 to 127.
        _ => ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// Converts f32 to IEEE binary16 bits, rounding to nearest with ties to even; overflow gives
/// infinity, NaN stays NaN.
pub fn f32_to_f16(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = (x >> 23) & 0xff;
    let man = x & 0x007f_ffff;

    if exp == 0xff {
        // Infinity, or NaN with a payload that must stay non-zero (quiet bit set).
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let half_exp = exp as i32 - 127 + 15;
    if half_exp >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exp <= 0 {
        // Subnormal (or zero) result: shift the full significand right, then round.
        let shift = 14 - half_exp;
        if shift > 24 {
            return sign;
        }
        let full = man | 0x0080_0000;
        let half_man = full >> shift;
        let round_bit = 1u32 << (shift - 1);
        let sticky = full & (round_bit - 1);
        let round_up = full & round_bit != 0 && (sticky != 0 || half_man & 1 != 0);
        return sign | (half_man + u32::from(round_up)) as u16;
    }
    let base = ((half_exp as u32) << 10) | (man >> 13);
    let round_bit = 0x1000;
    let sticky = man & (round_bit - 1);
    let round_up = man & round_bit != 0 && (sticky != 0 || base & 1 != 0);
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (base + u32::from(round_up)) as u16
}

/// Converts bfloat16 bits to f32 (exact).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Converts f32 to bfloat16 bits as ggml does: round to nearest even, NaN forced quiet.
pub fn f32_to_bf16(value: f32) -> u16 {
    let x = value.to_bits();
    if x & 0x7fff_ffff > 0x7f80_0000 {
        return ((x >> 16) | 64) as u16;
    }
    ((x + (0x7fff + ((x >> 16) & 1))) >> 16) as u16
}
