"""Everything only training needs: the corpus and its split, and the trainer of each shipped weight file.

``talk-train`` (:mod:`codec.train.cli`) dispatches into these modules; no runtime module imports them.
"""
