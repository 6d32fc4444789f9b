"""SynthVStar: a synthetic, V*Bench-format benchmark of small targets in cluttered high-res scenes.

- :func:`eval.synth.generate.generate_benchmark` writes a benchmark folder (``seal bench synth``).
- :func:`eval.synth.sample.render_sample` renders one sample from a ``numpy.random.Generator``
  (for on-the-fly training data); :func:`eval.synth.sample.sample_rng` gives the benchmark's streams.
"""
