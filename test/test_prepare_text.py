"""`gausstr-prepare text`: vocabulary + text encoder -> prototype file."""

from __future__ import annotations

import torch
from test_foundation_fakes import write_tiny_open_clip

from gausstr_core.cli.prepare import main
from gausstr_core.foundation.synthetic import SyntheticTextEncoder
from gausstr_core.resources import vocabulary_file
from gausstr_core.vocabulary import TEMPLATE_SETS, Vocabulary, load_prototypes


def test_synthetic_prototypes_of_the_occ3d_vocabulary(tmp_path) -> None:
    vocab_path = vocabulary_file("vocabulary_occ3d.yaml")
    out = tmp_path / "protos" / "synthetic.pth"
    main(
        [
            "text",
            "--vocabulary",
            str(vocab_path),
            "--provider",
            "synthetic",
            "--option",
            "feature_dim=8",
            "--option",
            "strict=true",
            "--out",
            str(out),
        ]
    )
    prototypes = load_prototypes(out, Vocabulary.load(vocab_path))
    assert prototypes.provider == "synthetic" and prototypes.embeddings.shape == (21, 8)
    # Every prompt of the authors' groups is known to the synthetic world (strict=true would raise otherwise),
    # and synonyms land on their Occ3D class's prototype.
    reference = SyntheticTextEncoder(feature_dim=8).encode(
        ["pedestrian", "driveable_surface", "manmade", "traffic_cone"]
    )
    for prompt, row in zip(["person", "road", "fence", "cone"], reference):
        torch.testing.assert_close(prototypes.embeddings[prototypes.prompts.index(prompt)], row)


def test_clip_prototypes_from_a_local_model(tmp_path) -> None:
    import open_clip

    clip_dir = write_tiny_open_clip(tmp_path / "clip")
    spec = tmp_path / "clip.yaml"
    spec.write_text(f"name: clip\nmodel: local-dir:{clip_dir}\n")
    out = tmp_path / "clip.pth"
    main(
        [
            "text",
            "--vocabulary",
            str(vocabulary_file("vocabulary_occ3d.yaml")),
            "--provider",
            str(spec),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    prototypes = load_prototypes(out)
    net = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    # the CLIP variant's default ensemble: mean of the L2-normalised template embeddings, renormalised
    with torch.no_grad():
        per_template = torch.stack([
            torch.nn.functional.normalize(net.encode_text(tokenizer([t.format(p) for p in prototypes.prompts])), dim=-1)
            for t in TEMPLATE_SETS["openai_imagenet_sub"]])
    expected = torch.nn.functional.normalize(per_template.mean(0), dim=-1)
    torch.testing.assert_close(prototypes.embeddings, expected, atol=1e-5, rtol=1e-4)


def test_bad_input_exits_with_a_message(tmp_path, capsys) -> None:
    code = main(["text", "--vocabulary", "vocabulary_occ3d.yaml",  # a packaged vocabulary by name
                 "--out", str(tmp_path / "x.pth")])
    assert code == 2 and "needs a 'name'" in capsys.readouterr().err
    absent = str(tmp_path / "absent.yaml")
    assert main(["text", "--vocabulary", absent, "--provider", "synthetic", "--out", "x.pth"]) == 2
    assert "vocabulary file not found" in capsys.readouterr().err
