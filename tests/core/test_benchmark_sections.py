"""Benchmark sections of docs/benchmarks.md: a rewrite keeps the hand-written subsections."""

from benchmarks._common import write_section


def test_rewritten_section_keeps_hand_written_subsections(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nuntouched\n\n## Label quality\n\nold figures\n\n"
                   "### Targets\n\n- old target\n\n### Scope\n\nRuns: seeds 0-3.\n\n"
                   "### Cost (measured earlier)\n\nold cost\n\n### What the figures say\n\n"
                   "- prevalence: why\n\n## Last\n\nend\n", encoding="utf-8")
    keep = ("Scope", "What the figures say", "Cost")
    write_section(doc, "Label quality", "new figures\n\n### Targets\n\n- new target", keep=keep)
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("## Label quality"):text.index("## Last")]
    assert "old figures" not in section and "old target" not in section
    assert section.index("new figures") < section.index("### Scope\n\nRuns: seeds 0-3.")
    assert "### What the figures say\n\n- prevalence: why" in section
    assert "old cost" in section
    assert "## Other\n\nuntouched" in text and text.endswith("## Last\n\nend\n")
    # a subsection the body writes itself replaces the hand-written one of that title
    write_section(doc, "Label quality", "newer\n\n### Cost of one fit\n\nnew cost", keep=keep)
    text = doc.read_text(encoding="utf-8")
    assert "old cost" not in text and "new cost" in text and "Runs: seeds 0-3." in text
    # without keep the whole section is replaced, as before
    write_section(doc, "Label quality", "bare")
    assert "Runs: seeds 0-3." not in doc.read_text(encoding="utf-8")
