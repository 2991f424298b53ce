//! The inputs of a forward pass and their checks, shared by every engine.

use crate::config::{Cell, LstmConfig};
use crate::error::{LstmError, Result};
use crate::real::Real;
use crate::tensor::Tensor;

/// What a forward pass reads, as in `lstm(input, (h_0, c_0))` or
/// `gru(input, h_0)` in PyTorch.
#[derive(Clone, Copy, Debug)]
pub struct LstmInput<'a, T = f32> {
    /// [T, B, I], or [B, T, I] when `config.batch_first`.
    pub input: &'a Tensor<T>,
    /// [D·L, B, H_out] (H_out = `proj_size` if > 0, else H); zeros when
    /// `None`. An LSTM takes both `h_0` and `c_0` or neither; a GRU `h_0`
    /// alone.
    pub h_0: Option<&'a Tensor<T>>,
    /// [D·L, B, H]; zeros when `None`. Always `None` for a GRU, which has
    /// no cell state.
    pub c_0: Option<&'a Tensor<T>>,
    /// \[B\]: valid steps per sequence, each in 1..=T, in any order
    /// (`pack_padded_sequence(..., enforce_sorted=False)` semantics).
    /// `None` means every sequence has all T steps.
    pub lengths: Option<&'a [usize]>,
    /// Also return the last layer's cell state at every step
    /// ([`LstmOutput::cell_states`](crate::LstmOutput::cell_states)).
    pub cell_states: bool,
}

impl<'a, T: Real> LstmInput<'a, T> {
    /// Just an input sequence: zero initial state, full lengths.
    pub fn new(input: &'a Tensor<T>) -> Self {
        LstmInput {
            input,
            h_0: None,
            c_0: None,
            lengths: None,
            cell_states: false,
        }
    }

    /// Asks for the last layer's cell state at every step, as
    /// [`LstmOutput::cell_states`](crate::LstmOutput::cell_states).
    pub fn with_cell_states(mut self) -> Self {
        self.cell_states = true;
        self
    }

    /// Sets the initial state: `h_0` [D·L, B, H_out] and `c_0` [D·L, B, H].
    pub fn with_state(mut self, h_0: &'a Tensor<T>, c_0: &'a Tensor<T>) -> Self {
        self.h_0 = Some(h_0);
        self.c_0 = Some(c_0);
        self
    }

    /// Sets a GRU's initial state `h_0` [D·L, B, H] (a GRU has no cell
    /// state; an LSTM needs [`with_state`](Self::with_state)).
    pub fn with_h_0(mut self, h_0: &'a Tensor<T>) -> Self {
        self.h_0 = Some(h_0);
        self
    }

    /// Starts from a state carried over from an earlier pass of `cell`:
    /// (h_0, c_0) for an LSTM, h_0 alone for a GRU (whose `c` is ignored).
    pub(crate) fn with_carried(
        self,
        cell: crate::config::Cell,
        h: &'a Tensor<T>,
        c: &'a Tensor<T>,
    ) -> Self {
        match cell {
            crate::config::Cell::Lstm => self.with_state(h, c),
            crate::config::Cell::Gru => self.with_h_0(h),
        }
    }

    /// Sets `lengths` \[B\]: valid steps per sequence, each in 1..=T.
    pub fn with_lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }

    /// Checks every shape and value against `config`; returns (T, B).
    pub fn validate(&self, config: &LstmConfig) -> Result<(usize, usize)> {
        let dims = check_shapes(
            config,
            self.input.shape(),
            self.h_0.map(Tensor::shape),
            self.c_0.map(Tensor::shape),
            self.lengths,
        )?;
        if self.cell_states && config.cell == Cell::Gru {
            return Err(LstmError::value(
                "cell_states",
                "a GRU has no cell state to return (ask an LSTM for them)",
            ));
        }
        check_finite("input", self.input.data())?;
        for (name, state) in [("h_0", self.h_0), ("c_0", self.c_0)] {
            if let Some(s) = state {
                check_finite(name, s.data())?;
            }
        }
        Ok(dims)
    }
}

/// The shape checks of a forward pass, for host and GPU tensors alike;
/// returns (T, B).
pub fn check_shapes(
    config: &LstmConfig,
    input: &[usize],
    h_0: Option<&[usize]>,
    c_0: Option<&[usize]>,
    lengths: Option<&[usize]>,
) -> Result<(usize, usize)> {
    let [a, b, i] = *input else {
        let want = if config.batch_first {
            "[B, T, I]"
        } else {
            "[T, B, I]"
        };
        return Err(LstmError::value(
            "input",
            format!("must have rank 3 ({want}), got shape {input:?}"),
        ));
    };
    let (seq_len, batch) = if config.batch_first { (b, a) } else { (a, b) };
    if i != config.input_size {
        let expected = if config.batch_first {
            [batch, seq_len, config.input_size]
        } else {
            [seq_len, batch, config.input_size]
        };
        return Err(LstmError::shape("input", &expected, input));
    }
    if seq_len == 0 || batch == 0 {
        return Err(LstmError::value(
            "input",
            format!("needs at least one time step and one sequence, got shape {input:?}"),
        ));
    }
    // h is [D·L, B, H_out] (P with a projection), c is [D·L, B, H].
    let states = config.num_layers * config.num_directions();
    let h_shape = [states, batch, config.hidden_out()];
    let c_shape = [states, batch, config.hidden_size];
    if config.cell == Cell::Gru {
        if c_0.is_some() {
            return Err(LstmError::value(
                "c_0",
                "must be None: a GRU has no cell state (give h_0 alone, as to nn.GRU)",
            ));
        }
    } else if h_0.is_some() != c_0.is_some() {
        let (given, missing) = if h_0.is_some() {
            ("h_0", "c_0")
        } else {
            ("c_0", "h_0")
        };
        return Err(LstmError::value(
            missing,
            format!("missing while {given} is given; nn.LSTM takes both initial states or neither"),
        ));
    }
    for (name, state, shape) in [("h_0", h_0, h_shape), ("c_0", c_0, c_shape)] {
        if let Some(s) = state.filter(|s| *s != shape) {
            return Err(LstmError::shape(name, &shape, s));
        }
    }
    if let Some(lengths) = lengths {
        if lengths.len() != batch {
            return Err(LstmError::shape("lengths", &[batch], &[lengths.len()]));
        }
        if let Some((idx, &len)) = lengths
            .iter()
            .enumerate()
            .find(|&(_, &l)| l == 0 || l > seq_len)
        {
            return Err(LstmError::value(
                "lengths",
                format!("lengths[{idx}] = {len}, but each length must be in 1..={seq_len} (T)"),
            ));
        }
    }
    Ok((seq_len, batch))
}

/// Rejects NaN and infinities, naming the first bad element.
pub(crate) fn check_finite<T: Real>(name: &str, data: &[T]) -> Result<()> {
    // Blocks with no branch per element, which the compiler vectorises;
    // the search for the position only after a failure.
    let finite = |block: &[T]| block.iter().fold(true, |ok, v| ok & v.is_finite());
    if data.chunks(1024).all(finite) {
        return Ok(());
    }
    match data.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(LstmError::value(
            name,
            format!("non-finite value {:?} at flat index {i}", data[i]),
        )),
        None => Ok(()),
    }
}
