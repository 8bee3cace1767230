"""Notebook widgets for every step of H-Sets, over one shared state.

``Explorer(image, model=None, **settings)`` composes them all; each is usable alone with
the same :class:`ExplorerState` (or builds its own from an image):

=====================  ====================================================================
``ImageView``          photo, segments, heatmap, current set and seeds; click to seed, hover
``RowInspector``       the seed's Hessian row as a map and a histogram with the threshold
``ThresholdExplorer``  mu / nu / rule / sign / order controls that regrow from cached rows
``FaithfulnessReadout`` live MoRF / LeRF AOPC and sparsity of what is shown, with IG and random
``MergeAnimation``     Play / step through the growth trace
``SeedRanking``        why the automatic seeds: their segments' attribution mass, a warning
``SubsetSampling``     random subsets of the set and the running estimate of its value
``MethodsView``        another registered method side by side, as a layer, its sets tested
``RoadView``           ROAD MoRF/LeRF curves of H-Sets against IG, and imputed images
``SweepPanel``         faithfulness against mu (bqplot); a click applies that mu
``ExportPanel``        image PNG, figure PNG and explanation file, written from Python
``StatusBar``          progress, cancel and errors of the background work
``Gallery``            a whole ``hsets evaluate`` run: grid, sort, scatter, summary, two runs
=====================  ====================================================================

The engine (:mod:`hsets_widgets.hsets.explain`) never imports this package.
"""
from .animation import MergeAnimation
from .explorer import Explorer, SetsPanel, StatusBar
from .export import ExportPanel, save_figure, save_png
from .gallery import Gallery
from .image_view import ImageView, compose_view
from .methods_view import MethodsView
from .readout import FaithfulnessReadout
from .road_view import RoadView
from .row_inspector import RowInspector
from .sampling import SubsetSampling
from .seeds_view import SeedRanking
from .state import ExplorerState
from .sweep_view import SweepPanel
from .threshold import ThresholdExplorer

__all__ = ["FaithfulnessReadout", "Explorer", "ExplorerState", "ExportPanel", "Gallery", "ImageView", "MergeAnimation",
           "MethodsView", "RoadView", "RowInspector", "SeedRanking", "SetsPanel", "StatusBar", "SubsetSampling",
           "SweepPanel", "ThresholdExplorer", "compose_view", "save_figure", "save_png"]
