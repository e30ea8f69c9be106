import pytest
import torch

from conftest import missing
from deepdiff import cpu_kernel
from deepdiff.config import ModelConfig
from deepdiff.model import INIT_RANGE, BinEncoder, DeepDiff, MarkEncoder, count_parameters, level1_impl
from deepdiff.variants import VARIANTS, VariantSpec

# Exact trainable parameter counts at the published sizes (Level I hidden 32, Level II hidden 16).
# By hand: one Level I channel = biLSTM(1->32) 8,960 + context 64 = 9,024; one Level II = biLSTM(64->16)
# 10,496 + context 32 = 10,528; linear(32->1) = 33; MLP 64->32->1 = 2,113; a classification aux head 66.
PINNED = {
    ("raw_d", "regression"): 55_681,  # 5 ch + f2 + linear
    ("raw_c", "regression"): 100_801,  # 10 ch
    ("raw", "regression"): 145_921,  # 15 ch
    ("aux", "regression"): 113_475,  # 2 x (5 ch + f2 + head) + MLP
    ("aux", "classification"): 113_541,
    ("raw_aux", "regression"): 257_283,  # 15 + 5 + 5 ch, three f2, two aux heads, linear
    ("raw_aux", "classification"): 257_349,
    ("aux_siamese", "regression"): 68_355,  # aux with one shared 5-channel f1
    ("aux_siamese", "classification"): 68_421,
    ("raw_aux_siamese", "regression"): 212_163,
    ("raw_aux_siamese", "classification"): 212_229,
}

SMALL = dict(level1_hidden=4, level2_hidden=3, n_bins=12)


@pytest.mark.parametrize("variant, aux_mode", sorted(PINNED))
def test_parameter_count_is_pinned(variant, aux_mode):
    model = DeepDiff.from_config(ModelConfig(variant=variant, aux_mode=aux_mode))
    assert count_parameters(model) == PINNED[variant, aux_mode]


def test_aux_mode_does_not_change_variants_without_aux():
    for name in ("raw_d", "raw_c", "raw"):
        counts = {count_parameters(DeepDiff.from_config(ModelConfig(variant=name, aux_mode=m))) for m in ("regression", "classification")}
        assert len(counts) == 1


def test_encoders_state_their_shapes():
    x = torch.rand(4, 3, 12)
    emb, alpha = BinEncoder(3, 5)(x)
    assert emb.shape == (4, 3, 10) and alpha.shape == (4, 3, 12)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 3))
    v, beta = MarkEncoder(10, 2)(emb)
    assert v.shape == (4, 4) and beta.shape == (4, 3)
    torch.testing.assert_close(beta.sum(-1), torch.ones(4))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("aux_mode", ["regression", "classification"])
def test_forward_contract(variant, aux_mode):
    spec = VARIANTS[variant]
    model = DeepDiff(spec, ModelConfig(variant=variant, aux_mode=aux_mode, **SMALL))
    out = model(torch.rand(6, 5, 12), torch.rand(6, 5, 12))
    assert out.prediction.shape == (6,)
    n_main = 5 * len(spec.level1_inputs)
    if spec.level1_inputs:
        assert out.level1["diff"].shape == (6, n_main, 8)
        assert out.bin_attention["diff"].shape == (6, n_main, 12)
        assert out.mark_attention["diff"].shape == (6, n_main + (10 if spec.cell_encoders else 0))
    if spec.cell_encoders:
        for cell in ("A", "B"):
            assert out.level1[cell].shape == (6, 5, 8)
            assert out.bin_attention[cell].shape == (6, 5, 12)
            assert out.mark_attention[cell].shape == (6, 5)
            assert out.aux[cell].shape == ((6,) if aux_mode == "regression" else (6, 2))
    else:
        assert out.aux == {} and set(out.level1) == {"diff"}
    names = model.channel_names(("m1", "m2", "m3", "m4", "m5"))
    for path, labels in names.items():
        assert len(labels) == out.bin_attention[path].shape[1]


def test_siamese_variants_call_one_level1_module_for_both_cells():
    model = DeepDiff(VARIANTS["aux_siamese"], ModelConfig(variant="aux_siamese", **SMALL))
    assert set(model.level1) == {"AB"}
    x = torch.rand(3, 5, 12)
    model.eval()
    out = model(x, x.clone())
    torch.testing.assert_close(out.level1["A"], out.level1["B"])  # same weights, same input
    unshared = DeepDiff(VARIANTS["aux"], ModelConfig(variant="aux", **SMALL)).eval()
    out = unshared(x, x.clone())
    assert not torch.allclose(out.level1["A"], out.level1["B"])


def test_raw_variant_orders_channel_groups_as_the_reference():
    model = DeepDiff(VARIANTS["raw"], ModelConfig(variant="raw", **SMALL))
    assert model.channel_names(("k4me1",))["diff"] == ["A:k4me1", "B:k4me1", "A-B:k4me1"]


def test_init_is_uniform_within_published_range():
    model = DeepDiff.from_config(ModelConfig(variant="raw_aux"))
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.abs().max() <= INIT_RANGE
    assert values.std() > 0.05  # really spread over the range, not zeros


def test_dropout_acts_in_training_and_not_in_eval():
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", dropout=0.5, **SMALL))
    x_a, x_b = torch.rand(8, 5, 12), torch.rand(8, 5, 12)
    model.train()
    assert not torch.allclose(model(x_a, x_b).prediction, model(x_a, x_b).prediction)
    model.eval()
    torch.testing.assert_close(model(x_a, x_b).prediction, model(x_a, x_b).prediction)
    no_dropout = DeepDiff.from_config(ModelConfig(variant="raw_d", dropout=0.0, **SMALL)).train()
    torch.testing.assert_close(no_dropout(x_a, x_b).prediction, no_dropout(x_a, x_b).prediction)


def test_an_eighth_variant_is_one_row():
    spec = VariantSpec("raw_c_aux", ("A", "B"), True, False, True, False)
    out = DeepDiff(spec, ModelConfig(variant="raw", **SMALL))(torch.rand(2, 5, 12), torch.rand(2, 5, 12))
    assert out.prediction.shape == (2,) and set(out.aux) == {"A", "B"}



# --- Level I: the grouped recurrence computes exactly what the per-channel nn.LSTMs compute ----------


def _outputs_and_grads(model, impl, x_a, x_b):
    """Every output of a forward pass, and the gradients (inputs, every parameter) of a fixed random
    weighted sum of all of them (the same weights for both implementations)."""
    model.set_level1_impl(impl)
    x_a, x_b = x_a.clone().requires_grad_(), x_b.clone().requires_grad_()
    out = model(x_a, x_b)
    tensors = [out.prediction, *out.aux.values(), *out.level1.values(), *out.bin_attention.values(),
               *out.mark_attention.values()]
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in tensors)
    grads = torch.autograd.grad(loss, [x_a, x_b, *model.parameters()])
    return [t.detach() for t in tensors], grads


def _assert_impls_agree(model, x_a, x_b, atol=1e-5, impl="grouped"):
    model.eval()  # no dropout, so both passes compute the same function
    ref_out, ref_grads = _outputs_and_grads(model, "per_channel", x_a, x_b)
    out, grads = _outputs_and_grads(model, impl, x_a, x_b)
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    names = ["x_a", "x_b", *(name for name, _ in model.named_parameters())]
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=lambda m: f"gradient of {name}: {m}")
    with torch.no_grad():  # the inference path keeps no per-step buffers; same outputs
        model.set_level1_impl(impl)
        torch.testing.assert_close(model(x_a, x_b).prediction, ref_out[0], atol=atol, rtol=0)


def _counts(shape, seed):
    """Count-like inputs (the model sees raw read counts: mostly small, some larger)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(shape, generator=gen) * 4, generator=gen)


def _fused_or_skip(impl):
    if impl == "fused" and not cpu_kernel.available():
        missing(f"no C kernel on this machine: {cpu_kernel.status()}")  # CI has a compiler: fails there


# "grouped": the torch-ops recurrence a GPU runs; "fused": the compiled C kernel the CPU runs. SMALL's
# hidden size 4 takes the kernel's plain loops, hidden 16 and 32 its SIMD path.
@pytest.mark.parametrize("impl", ["grouped", "fused"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_grouped_level1_matches_per_channel_lstms(variant, impl):
    _fused_or_skip(impl)
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant=variant, **SMALL))
    _assert_impls_agree(model, _counts((3, 5, 12), 1), _counts((3, 5, 12), 2), impl=impl)


@pytest.mark.parametrize("impl", ["grouped", "fused"])
def test_grouped_level1_matches_at_published_sizes(impl):
    _fused_or_skip(impl)
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_aux_siamese"))  # hidden 32/16, 200 bins, 25 channels
    _assert_impls_agree(model, _counts((2, 5, 200), 1), _counts((2, 5, 200), 2), impl=impl)


@pytest.mark.parametrize("hidden", [16, 64])
def test_fused_level1_matches_at_the_searched_hidden_sizes(hidden):
    _fused_or_skip("fused")
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_c", level1_hidden=hidden, level2_hidden=8, n_bins=30))
    _assert_impls_agree(model, _counts((7, 5, 30), 1), _counts((7, 5, 30), 2), impl="fused")


@pytest.mark.parametrize("impl", ["grouped", "fused"])
def test_evaluation_keeps_no_buffers_for_a_backward(impl, monkeypatch):
    """Under no_grad the parameters still say requires_grad; the grouped recurrences must not keep their
    per-step buffers then (at paper sizes 54 MB per batch, allocated and faulted in for nothing)."""
    _fused_or_skip(impl)
    from deepdiff import grouped_lstm

    kept = []  # one entry per buffer kept for a backward
    take, recurrence = cpu_kernel._take, grouped_lstm._recurrence

    def counting_take(numel):
        kept.append(numel)
        return take(numel)

    def counting_recurrence(seq, w, keep, *precision):
        if keep:
            kept.append(seq.shape)
        return recurrence(seq, w, keep, *precision)

    monkeypatch.setattr(cpu_kernel, "_take", counting_take)
    monkeypatch.setattr(grouped_lstm, "_recurrence", counting_recurrence)
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", **SMALL)).set_level1_impl(impl)
    x = torch.rand(2, 5, 12)
    with torch.no_grad():
        model(x, x)
    assert kept == []
    model(x, x).prediction.sum().backward()
    assert kept  # training keeps them


@pytest.mark.slow
def test_a_kernel_that_disagrees_is_not_used(monkeypatch, tmp_path):
    """The self-check is not vacuous: a kernel build computing the forget gate wrong is refused, and
    Level I then runs through torch ops (no error, the same results)."""
    broken = tmp_path / "lstm_kernel.c"
    broken.write_text(cpu_kernel.SOURCE.read_text().replace("f * cp + i * gg", "0.5f * f * cp + i * gg"))
    monkeypatch.setattr(cpu_kernel, "SOURCE", broken)
    monkeypatch.setattr(cpu_kernel, "_cache_dirs", lambda: [tmp_path / "build"])
    monkeypatch.setattr(cpu_kernel, "_status", None)
    monkeypatch.setattr(cpu_kernel, "_lib", None)
    assert not cpu_kernel.available()
    assert "disagrees with the torch implementation" in cpu_kernel.status()
    assert level1_impl(torch.device("cpu"), 10) == "per_channel"


@pytest.mark.slow
@pytest.mark.parametrize("openmp", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernel_threads_split_the_work_without_changing_it(monkeypatch, tmp_path, openmp, threads):
    """Both ways of spreading the kernel over threads (torch's OpenMP threads, or a pool of our own for
    a build without OpenMP) give what one thread and the torch recurrence give, with more threads than
    some phases have channels (3 > 2) and an odd batch."""
    from deepdiff.grouped_lstm import grouped_level1

    _fused_or_skip("fused")
    builds = [f for f in cpu_kernel.BUILDS if ("-fopenmp" in f) == openmp]
    monkeypatch.setattr(cpu_kernel, "BUILDS", tuple(builds))
    monkeypatch.setattr(cpu_kernel, "_cache_dirs", lambda: [tmp_path / "build"])
    monkeypatch.setattr(cpu_kernel, "_status", None)
    monkeypatch.setattr(cpu_kernel, "_lib", None)
    monkeypatch.setattr(cpu_kernel, "_openmp", cpu_kernel._openmp)  # restored with the library after the test
    monkeypatch.setattr(cpu_kernel, "_flags", cpu_kernel._flags)
    if not cpu_kernel.available():
        missing(f"this compiler cannot build that way: {cpu_kernel.status()}")
    assert ("OpenMP" in cpu_kernel.status()) == openmp
    gen = torch.Generator().manual_seed(3)
    n, k, steps, hid = 5, 2, 13, 16
    x = _counts((n, k, steps), 4)
    w = (torch.rand(2 * k, hid + 2, 4 * hid, generator=gen) - 0.5) * 0.4
    context = torch.rand(k, 2 * hid, generator=gen) - 0.5
    dm, dalpha = torch.randn(n, k, 2 * hid, generator=gen), torch.randn(n, k, steps, generator=gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ours = [t.clone().requires_grad_() for t in (x, w, context)]
        m, alpha = cpu_kernel.fused_level1(*ours)
        ((m * dm).sum() + (alpha * dalpha).sum()).backward()
        with torch.no_grad():
            m_eval, alpha_eval = cpu_kernel.fused_level1(x, w, context)
    finally:
        torch.set_num_threads(before)
    theirs = [t.clone().requires_grad_() for t in (x, w, context)]
    m2, alpha2 = grouped_level1(*theirs)
    ((m2 * dm).sum() + (alpha2 * dalpha).sum()).backward()
    for a, b in ((m, m2), (alpha, alpha2), (m_eval, m2), (alpha_eval, alpha2), *zip((t.grad for t in ours), (t.grad for t in theirs))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_profiling_builds_leave_out_the_parts_they_name(monkeypatch, tmp_path):
    """benchmarks/bench_kernel.py --parts times builds of the kernel with -DDD_OMIT=<parts>: they must
    still compile, and leave out what they say: the forward's parts change the forward, the backward's
    only the gradients. (The package's own build is the full kernel: the self-check holds it to torch.)"""
    _fused_or_skip("fused")
    full = cpu_kernel._load()
    gen = torch.Generator().manual_seed(5)
    n, k, steps, hid = 3, 2, 7, 8
    x = _counts((n, k, steps), 4)
    w = (torch.rand(2 * k, hid + 2, 4 * hid, generator=gen) - 0.5) * 0.4
    context = torch.rand(k, 2 * hid, generator=gen) - 0.5

    def run():
        w1 = w.clone().requires_grad_()
        m, alpha = cpu_kernel.fused_level1(x, w1, context.clone().requires_grad_())
        (m.sum() + (alpha * alpha).sum()).backward()
        return m.detach(), w1.grad

    m_full, dw_full = run()
    for bits, forward_changes in ((1 | 2 | 4 | 64, True), (8 | 16 | 32, False)):
        monkeypatch.setattr(cpu_kernel, "_lib", cpu_kernel.profiling_build(bits, tmp_path))
        m, dw = run()
        monkeypatch.setattr(cpu_kernel, "_lib", full)
        assert torch.equal(m, m_full) != forward_changes, bits
        assert not torch.allclose(dw, dw_full), bits


@pytest.mark.slow
@pytest.mark.parametrize("width", [4, 8, 16])
def test_the_kernel_agrees_with_torch_at_every_vector_width(monkeypatch, tmp_path, width):
    """The kernel is written once for vectors of VW floats, VW the CPU's own width (16 with AVX-512, 8
    with AVX, 4 elsewhere); a CPU tests only its own width when the kernel loads, so every width is
    built here and held to the torch implementation (values and gradients, H with and without padding)."""
    _fused_or_skip("fused")
    monkeypatch.setattr(cpu_kernel, "_lib", cpu_kernel.profiling_build(0, tmp_path, vector_width=width))
    assert cpu_kernel._compare() == ""


def test_every_threads_scratch_starts_on_a_cache_line():
    """The kernel gives thread i the scratch at i x dd_*_scratch floats of one 64-byte-aligned buffer: the
    sizes must be whole cache lines (16 floats), or every vector of the second thread's part straddles two
    lines (which once cost a third of the two-thread backward at batch 10)."""
    _fused_or_skip("fused")
    lib = cpu_kernel._load()
    for steps in (1, 9, 200):
        for n in (1, 5, 10, 33, 64, 257):
            for hid in (4, 5, 16, 32, 48):
                sizes = [fn(steps, n, hid) for fn in (lib.dd_forward_scratch, lib.dd_infer_scratch, lib.dd_backward_scratch)]
                sizes.append(lib.dd_attend_scratch(steps, hid))
                assert all(size % 16 == 0 for size in sizes), (steps, n, hid, sizes)


def test_no_compiler_falls_back_to_torch_ops(monkeypatch):
    def none():
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")

    monkeypatch.setattr(cpu_kernel, "_compiler", none)
    monkeypatch.setattr(cpu_kernel, "_status", None)
    monkeypatch.setattr(cpu_kernel, "_lib", None)
    assert not cpu_kernel.available() and "no C compiler" in cpu_kernel.status()
    assert level1_impl(torch.device("cpu"), 10) == "per_channel"
    assert level1_impl(torch.device("cpu"), 64) == "grouped"
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", **SMALL))
    assert model(torch.rand(2, 5, 12), torch.rand(2, 5, 12)).prediction.shape == (2,)


def test_grouped_level1_check_fails_on_a_wrong_gate_order(monkeypatch):
    """The equivalence check is not vacuous: grouped weights with i and f swapped are caught."""
    import deepdiff.model
    from deepdiff import grouped_lstm

    stack = grouped_lstm.stack_lstm_weights

    def swapped(lstms):
        w = stack(lstms)
        hid = w.shape[-1] // 4
        return torch.cat((w[..., hid : 2 * hid], w[..., :hid], w[..., 2 * hid :]), dim=-1)

    monkeypatch.setattr(deepdiff.model, "stack_lstm_weights", swapped)
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", **SMALL))
    with pytest.raises(AssertionError):
        _assert_impls_agree(model, _counts((3, 5, 12), 1), _counts((3, 5, 12), 2))


def test_level1_impl_is_not_part_of_the_model_state():
    """The way Level I runs is chosen by device, never stored: same state_dict keys as plain nn.LSTMs,
    so checkpoints load either way; a GPU runs the grouped path, which the tests above run on CPU."""
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", **SMALL))
    keys = [k for k in model.state_dict() if k.startswith("level1.diff.lstms.0.")]
    assert keys == [f"level1.diff.lstms.0.{w}_l0{s}" for s in ("", "_reverse") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert level1_impl(torch.device("cuda"), 10) == "grouped"
    if cpu_kernel.available():
        assert level1_impl(torch.device("cpu"), 10) == "fused"
    other = DeepDiff.from_config(ModelConfig(variant="raw_d", **SMALL)).set_level1_impl("per_channel")
    other.load_state_dict(model.state_dict())
    x = torch.rand(2, 5, 12)
    torch.testing.assert_close(other.eval()(x, x).prediction, model.eval()(x, x).prediction, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="expected one of fused, grouped, per_channel"):
        model.set_level1_impl("cudnn")
