"""Trustworthy labels and numbers: suspect labels (:mod:`.suspects`), agreement between experts
(:mod:`.agreement`), calibration you can see (:mod:`.reliability`), prevalence estimates with
intervals (:mod:`.prevalence`) and stopping guidance (:mod:`.stopping`); :mod:`.round` computes
them after a training round."""
