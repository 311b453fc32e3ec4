use proptest::prelude::*;

use super::*;
use crate::kernels::{block_dots_with, reference, Kernel};

fn layout_strategy() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::DEFAULT),
        (1usize..12, 1usize..80).prop_map(|(b, d)| Layout::new(b, d).unwrap()),
        (1usize..12, 1usize..6).prop_map(|(b, d)| Layout::new(b, d * 16).unwrap()),
    ]
}

fn template_strategy(layout: Layout) -> impl Strategy<Value = Template> {
    proptest::collection::vec(-1.0e3f32..1.0e3, layout.len())
        .prop_filter_map("zero block", move |v| Template::from_f32(layout, &v).ok())
}

fn pair_strategy() -> impl Strategy<Value = (Template, Template)> {
    layout_strategy().prop_flat_map(|l| (template_strategy(l), template_strategy(l)))
}

fn settings_strategy(blocks: usize) -> impl Strategy<Value = MatchSettings> {
    (
        proptest::collection::vec(-1.0f32..=1.0, blocks),
        prop_oneof![
            Just(MatchPolicy::AllThresholds),
            Just(MatchPolicy::Mean),
            (1..=blocks).prop_map(|k| MatchPolicy::KOfN { k }),
        ],
    )
        .prop_map(|(t, p)| MatchSettings::new(t, p).unwrap())
}

proptest! {
    #[test]
    fn simd_kernels_match_the_scalar_reference((a, b) in pair_strategy()) {
        let dim = a.layout().dim;
        let expected = reference::block_scores(&a, &b);
        for kernel in [Kernel::Simsimd, Kernel::FusedAvx512] {
            let mut got = vec![0.0; a.layout().blocks];
            block_dots_with(kernel, a.as_slice(), b.as_slice(), dim, &mut got);
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!((g - e).abs() <= 1e-5, "{kernel:?}: {g} vs {e}");
            }
        }
        let dispatched = block_scores(&a, &b);
        for (g, e) in dispatched.iter().zip(&expected) {
            prop_assert!((g - e).abs() <= 1e-5);
        }
    }

    #[test]
    fn a_template_scores_one_against_itself(a in layout_strategy().prop_flat_map(template_strategy)) {
        for s in block_scores(&a, &a) {
            prop_assert!((s - 1.0).abs() <= 1e-5, "{s}");
        }
    }

    #[test]
    fn scores_are_symmetric((a, b) in pair_strategy()) {
        let ab = block_scores(&a, &b);
        let ba = block_scores(&b, &a);
        for (x, y) in ab.iter().zip(&ba) {
            prop_assert!((x - y).abs() <= 1e-6);
        }
    }

    #[test]
    fn raising_a_threshold_never_turns_a_no_match_into_a_match(
        (a, b, settings, block, raise) in pair_strategy().prop_flat_map(|(a, b)| {
            let blocks = a.layout().blocks;
            (Just(a), Just(b), settings_strategy(blocks), 0..blocks, 0.0f32..2.0)
        })
    ) {
        let before = compare(&a, &b, &settings);
        let mut raised = settings.thresholds().to_vec();
        raised[block] = (raised[block] + raise).min(1.0);
        let stricter = MatchSettings::new(raised, settings.policy()).unwrap();
        let after = compare(&a, &b, &stricter);
        prop_assert!(before.matched || !after.matched, "a stricter threshold turned a no-match into a match");
        prop_assert_eq!(before.scores, after.scores);
    }

    #[test]
    fn decision_follows_its_policy_definition(
        (scores, settings) in (1usize..16).prop_flat_map(|n| (
            proptest::collection::vec(-1.0f32..=1.0, n),
            settings_strategy(n),
        ))
    ) {
        let t = settings.thresholds();
        let passing = scores.iter().zip(t).filter(|(s, t)| s >= t).count();
        let expected = match settings.policy() {
            MatchPolicy::AllThresholds => passing == t.len(),
            MatchPolicy::KOfN { k } => passing >= k,
            MatchPolicy::Mean => {
                scores.iter().sum::<f32>() / scores.len() as f32
                    >= t.iter().sum::<f32>() / t.len() as f32
            }
        };
        prop_assert_eq!(settings.decide(&scores), expected);
    }
}

#[test]
fn fused_kernel_is_chosen_where_supported() {
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(Kernel::best_for(64), Kernel::FusedAvx512);
    }
    assert_eq!(Kernel::best_for(63), Kernel::Simsimd);
}

#[test]
#[should_panic(expected = "do not hold")]
fn kernel_rejects_short_input_before_reading() {
    let a = vec![0.0f32; 64 * 10];
    let b = vec![0.0f32; 64 * 9];
    let mut out = vec![0.0f32; 10];
    block_dots_with(Kernel::FusedAvx512, &a, &b, 64, &mut out);
}

#[test]
fn default_settings_follow_the_contract() {
    let s = MatchSettings::default_for(Layout::DEFAULT);
    assert_eq!(s.policy(), MatchPolicy::AllThresholds);
    assert_eq!(s.thresholds(), &MatchSettings::DEFAULT_THRESHOLDS);
    let mut at = MatchSettings::DEFAULT_THRESHOLDS.to_vec();
    assert!(s.decide(&at));
    at[3] -= 1e-4;
    assert!(!s.decide(&at));
}

#[test]
fn invalid_settings_are_typed_errors() {
    assert_eq!(
        MatchSettings::new(vec![0.5, 1.5], MatchPolicy::AllThresholds),
        Err(SettingsError::ThresholdOutOfRange {
            block: 1,
            value: 1.5
        })
    );
    assert!(matches!(
        MatchSettings::new(vec![f32::NAN], MatchPolicy::Mean),
        Err(SettingsError::ThresholdOutOfRange { block: 0, .. })
    ));
    assert_eq!(
        MatchSettings::new(vec![0.5; 10], MatchPolicy::KOfN { k: 11 }),
        Err(SettingsError::InvalidK { k: 11, blocks: 10 })
    );
    assert_eq!(
        MatchSettings::new(vec![0.5; 10], MatchPolicy::KOfN { k: 0 }),
        Err(SettingsError::InvalidK { k: 0, blocks: 10 })
    );
}

#[test]
fn nan_scores_never_match() {
    let s = MatchSettings::new(vec![-1.0; 3], MatchPolicy::Mean).unwrap();
    assert!(!s.decide(&[f32::NAN, 1.0, 1.0]));
    let s = MatchSettings::new(vec![-1.0; 3], MatchPolicy::AllThresholds).unwrap();
    assert!(!s.decide(&[f32::NAN, 1.0, 1.0]));
}
