"""The nightly theme job: encoder -> reducer -> clusterer -> assigner -> labeller -> aligner."""
