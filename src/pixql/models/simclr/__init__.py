"""SimCLR: self-supervised image embeddings trained with ``BUILD MODEL ... USING SimCLR``.

The pieces are small, composable modules (after lightly's SimCLR example):

- :mod:`.backbone` – the encoder ``f`` (a narrow residual net for small images, torchvision's
  ResNet-18 for larger ones); its pooled features are the embeddings.
- :mod:`.heads` – the projection head ``g`` used only by the loss.
- :mod:`.loss` – the NT-Xent contrastive loss.
- :mod:`.transforms` – batched tensor augmentations and the two-view wrapper.
- :mod:`.data` – decoding a table's images once into a ``uint8`` tensor.
- :mod:`.train` – the training loop (epochs, time budget, progress).
- :mod:`.weights` – torchvision's ImageNet weights from the local torch hub cache.
- :mod:`.kind` – the ``SimCLR`` model kind and its embedder (registered as ``simclr``).

Reference: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020 (arXiv:2002.05709).

This package imports torch in its submodules; ``import pixql`` never imports it.
"""
