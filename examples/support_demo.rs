//! Exercises every utility of `examples/support` once (a smoke test for the
//! training examples' shared code; no LSTM involved).
//!
//! Run: `cargo run --release --example support_demo`

#[path = "support/mod.rs"]
mod support;

use std::path::Path;

use support::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = seeded_rng(42);

    // Sunspots.
    let spots = sunspots();
    let (first, last) = (spots[0], spots[spots.len() - 1]);
    let max = spots.iter().fold(f32::MIN, |m, &(_, v)| m.max(v));
    println!(
        "sunspots: {} years, {} ({}) .. {} ({}), max {max}",
        spots.len(),
        first.0,
        first.1,
        last.0,
        last.1
    );
    assert_eq!((spots.len(), first.0, last.0), (309, 1700, 2008));

    // Text.
    let kjv = kjv();
    let vocab = Vocab::from_text(&kjv);
    let tokens = vocab.encode(&kjv);
    let h = unigram_entropy_bits(&tokens, vocab.len());
    println!(
        "kjv.txt: {} bytes, {} characters, vocabulary {} ({:?}), unigram entropy {h:.4} bits/char \
         (= {:.4} nats)",
        kjv.len(),
        tokens.len(),
        vocab.len(),
        vocab.decode(&(0..vocab.len()).collect::<Vec<_>>()),
        h * std::f64::consts::LN_2
    );
    assert_eq!(vocab.decode(&tokens[..200]), kjv[..200]);
    assert!(text("data/kjv.txt") == kjv);

    // The adding problem and its mean-prediction baseline.
    let (t_len, b) = (100, 10_000);
    let (input, target) = adding_batch(&mut rng, t_len, b);
    assert_eq!((input.len(), target.len()), (t_len * b * 2, b));
    for s in 0..b {
        let marks: Vec<usize> = (0..t_len)
            .filter(|&t| input[(t * b + s) * 2 + 1] == 1.0)
            .collect();
        assert_eq!(marks.len(), 2);
        assert!(marks[0] < t_len / 2 && marks[1] >= t_len / 2);
        let sum = input[(marks[0] * b + s) * 2] + input[(marks[1] * b + s) * 2];
        assert_eq!(sum, target[s]);
    }
    let mse = target
        .iter()
        .map(|&y| ((y - 1.0) as f64).powi(2))
        .sum::<f64>()
        / b as f64;
    println!(
        "adding problem: input [T={t_len}, B={b}, 2], target [B, 1]; MSE of predicting 1.0 \
         over {b} samples = {mse:.4} (theory 1/6 = {:.4})",
        1.0 / 6.0
    );
    assert!(
        (mse - 1.0 / 6.0).abs() < 0.01,
        "baseline MSE {mse} far from 1/6"
    );

    // Char-LM batches.
    let corpus = CharCorpus::new(&kjv, 0.1);
    let batch = char_batch(&mut rng, &corpus.train, 64, 32);
    println!(
        "char LM: train {} / valid {} tokens; batch inputs [T={}, B={}] ({} tokens), targets [{}, {}]; \
         one-hot input [T, B, V] = {} floats",
        corpus.train.len(),
        corpus.valid.len(),
        batch.seq_len,
        batch.batch,
        batch.inputs.len(),
        batch.seq_len,
        batch.batch,
        one_hot(&batch.inputs, corpus.vocab.len()).len()
    );
    let column = |toks: &[usize], b: usize| -> String {
        corpus.vocab.decode(
            &(0..batch.seq_len)
                .map(|t| toks[t * batch.batch + b])
                .collect::<Vec<_>>(),
        )
    };
    println!("  sequence 0 input : {:?}", column(&batch.inputs, 0));
    let targets: Vec<usize> = batch.targets.iter().map(|&k| k as usize).collect();
    println!("  sequence 0 target: {:?}", column(&targets, 0));
    assert_eq!(
        column(&batch.inputs, 0)[1..],
        column(&targets, 0)[..batch.seq_len - 1]
    );
    let eval = char_eval_batches(&corpus.valid, 64, 32, 1000);
    println!(
        "  validation: {} deterministic batches of [64, 32]",
        eval.len()
    );
    let logits = [0.0f32, 3.0, 1.0];
    let picks: Vec<usize> = (0..10)
        .map(|_| sample_logits(&mut rng, &logits, 1.0))
        .collect();
    println!(
        "  sample_logits([0, 3, 1], T=1) x10: {picks:?}; argmax {}",
        sample_logits(&mut rng, &logits, 0.0)
    );

    // Time-series windows.
    let values: Vec<f32> = spots.iter().map(|&(_, v)| v).collect();
    let probe = SeriesWindows::new(values.clone(), 20, 0.2);
    let scaler = Scaler::fit(&values[..probe.split]);
    let windows = SeriesWindows::new(values.iter().map(|&v| scaler.apply(v)).collect(), 20, 0.2);
    let (x, y) = windows.train_batch(&mut rng, 16);
    let (xt, yt) = windows.test_batch();
    let test_years = windows.test_targets();
    println!(
        "series: window 20, train targets {:?} ({}..{}), test targets {:?} ({}..{}); scaler mean {:.2} std {:.2}",
        windows.train_targets(),
        spots[windows.train_targets().start].0,
        spots[windows.train_targets().end - 1].0,
        test_years,
        spots[test_years.start].0,
        spots[test_years.end - 1].0,
        scaler.mean,
        scaler.std
    );
    println!(
        "  train batch input [T=20, B=16, 1] = {} floats, target [16, 1] = {}; test batch input {} floats, target {}",
        x.len(),
        y.len(),
        xt.len(),
        yt.len()
    );
    assert!((scaler.invert(*yt.last().unwrap()) - last.1).abs() < 1e-3);

    // Plot a fake loss curve.
    let train: Vec<(f64, f64)> = (0..=500)
        .map(|s| {
            (
                s as f64,
                0.17 * (-(s as f64) / 120.0).exp() + 0.002 + 0.004 * ((s as f64) * 0.9).sin().abs(),
            )
        })
        .collect();
    let valid: Vec<(f64, f64)> = (0..=10)
        .map(|k| {
            (
                k as f64 * 50.0,
                0.17 * (-(k as f64) * 50.0 / 140.0).exp() + 0.004,
            )
        })
        .collect();
    let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/support_demo.svg");
    plot_losses(
        &svg,
        "support_demo: fake loss curves",
        &[("train", &train), ("validation", &valid)],
        true,
    )?;
    let svg_lin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/support_demo_linear.svg");
    plot_losses(
        &svg_lin,
        "support_demo: linear y axis",
        &[("train", &train)],
        false,
    )?;
    println!("plots: {} and {}", svg.display(), svg_lin.display());
    // Edge cases: one point, a constant curve, many decades, nothing to plot.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let (edge, edge1, edge2) = (
        target.join("support_demo_edge.svg"),
        target.join("support_demo_edge1.svg"),
        target.join("support_demo_edge2.svg"),
    );
    plot_losses(&edge1, "one point", &[("a", &[(3.0, 0.5)])], true)?;
    plot_losses(
        &edge2,
        "constant",
        &[("a", &[(0.0, 2.0), (9.0, 2.0)])],
        false,
    )?;
    let decades: Vec<(f64, f64)> = (0..100)
        .map(|s| (s as f64, 10f64.powf(2.0 - s as f64 / 10.0)))
        .collect();
    plot_losses(&edge, "many decades", &[("a", &decades)], true)?;
    assert!(plot_losses(&edge, "empty", &[("a", &[(0.0, f64::NAN)])], false).is_err());

    // Progress bar.
    let pb = progress(50, "demo");
    for step in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        pb.set_message(format!("loss {:.4}", train[step * 10].1));
        pb.inc(1);
    }
    pb.finish();
    println!("progress bar: 50 steps done in {:.2?}", pb.elapsed());
    Ok(())
}
