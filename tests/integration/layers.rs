//! `--acap-layer-range` resolution (spec section 2).

use acap::LayerRange;

#[test]
fn inclusive_range_as_given() {
    assert_eq!(LayerRange::new(22, 28).blocks(32), 22..=28);
    assert_eq!(LayerRange::new(22, 28).blocks(32).count(), 7);
}

#[test]
fn defaults_cover_blocks_one_to_last() {
    assert_eq!(LayerRange::default().blocks(32), 1..=31);
    assert_eq!(LayerRange::new(0, 0).blocks(32), 1..=31);
    assert_eq!(LayerRange::new(-3, -1).blocks(8), 1..=7);
    assert_eq!(LayerRange::new(5, 0).blocks(8), 5..=7);
}

#[test]
fn block_zero_is_never_capped() {
    assert_eq!(LayerRange::new(0, 3).blocks(8), 1..=3);
    assert!(!LayerRange::new(0, 3).blocks(8).contains(&0));
}

#[test]
fn blocks_beyond_the_model_are_ignored() {
    assert_eq!(LayerRange::new(6, 40).blocks(8), 6..=7);
    assert_eq!(LayerRange::new(8, 9).blocks(8).count(), 0);
    assert_eq!(LayerRange::new(5, 3).blocks(8).count(), 0);
    assert_eq!(LayerRange::default().blocks(1).count(), 0);
    assert_eq!(LayerRange::default().blocks(0).count(), 0);
}
