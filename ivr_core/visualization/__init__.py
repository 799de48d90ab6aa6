"""Pictures of what a model sees and decides: boxes and labels on images, per-iteration
labels, the spatial memory and the attention over iterations (``ivr test --visualize``)."""

from ivr_core.visualization.draw import class_color, draw_boxes, layout_labels, text_color
from ivr_core.visualization.panels import (changed_regions, panel_size, plot_attention,
                                           plot_iterations, plot_labels, plot_memory,
                                           predicted_classes, save_figures, softmax, write_image,
                                           write_png)

__all__ = ["changed_regions", "class_color", "draw_boxes", "layout_labels", "panel_size",
           "plot_attention", "plot_iterations", "plot_labels", "plot_memory",
           "predicted_classes", "save_figures", "softmax", "text_color", "write_image", "write_png"]
