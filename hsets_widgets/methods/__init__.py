"""The attribution methods H-Sets is compared with, behind one protocol
(:mod:`~hsets_widgets.methods.registry`): a method maps one image to a :class:`MapWithSets`.
"""
