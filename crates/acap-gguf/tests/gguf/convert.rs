//! Half-precision conversions against the `half` crate.

use acap_gguf::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

#[test]
fn f16_to_f32_is_exact_for_all_65536_values() {
    for bits in 0..=u16::MAX {
        let ours = f16_to_f32(bits);
        let theirs = half::f16::from_bits(bits).to_f32();
        assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
        // ggml widens bf16 by a plain shift, NaN payloads untouched.
        let bf = bf16_to_f32(bits);
        assert_eq!(bf.to_bits(), u32::from(bits) << 16);
        if !bf.is_nan() {
            assert_eq!(bf, half::bf16::from_bits(bits).to_f32());
        }
    }
}

#[test]
fn f32_to_half_rounds_like_half() {
    // A stride through all f32 bit patterns plus the neighbourhood of every f16 boundary.
    let mut patterns: Vec<u32> = (0..=u32::MAX).step_by(65_537).collect();
    for h in 0..=u16::MAX {
        let f = half::f16::from_bits(h).to_f32().to_bits();
        for d in [0u32, 1, 0xfff, 0x1000, 0x1001, 0x2000] {
            patterns.push(f.wrapping_add(d));
            patterns.push(f.wrapping_sub(d));
        }
    }
    for bits in patterns {
        let x = f32::from_bits(bits);
        assert_eq!(
            f32_to_f16(x),
            half::f16::from_f32(x).to_bits(),
            "{bits:#010x}"
        );
        assert_eq!(
            f32_to_bf16(x),
            half::bf16::from_f32(x).to_bits(),
            "{bits:#010x}"
        );
    }
}
