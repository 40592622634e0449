"""Evaluation of segment hierarchies (issue 5, "proof of quality"): numpy/scipy/skimage/higra only.

Modules, one concept each:

    metrics      covering, NFCovering, confusion-matrix mIoU / pixel accuracy, Hungarian matching
    datasets     readers: BSDS500, VOC-style, images/ + masks/ -> Sample(image, ground_truths, id)
    baselines    k-means, SLIC, Felzenszwalb, gradient UCM, gPb-owt-ucm cut at matched region counts
    transfer     kNN-prototype label transfer and dataset-wide clustering for Hungarian matching
    protocols    run a predictor over a dataset once and score every level (and the baselines)
    report       JSON + markdown report, written atomically
    runner       folders in, report files out (what `hsg eval` calls)
"""
