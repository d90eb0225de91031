"""A colour-magnitude diagram as a Tailwise view plugin (the worked example of docs/plugins.md).

Astronomers draw magnitudes with bright at the top, so the y axis is inverted; the main sequence
and the giant branch then look as in every textbook. The plugin declares the two columns it needs
by *role*; a layout maps them to a data set's own names (``colour: g_r``, ``magnitude: r``), and the
dashboard asks for them in a small form when the layout does not.
"""

from __future__ import annotations


class ColourMagnitude:
    """Points at (colour, magnitude), coloured like the map, magnitudes growing downwards."""

    title = "Colour–magnitude diagram"
    columns = {
        "colour": "a colour index, e.g. g − r",
        "magnitude": "an apparent or absolute magnitude, e.g. r",
    }
    x = "colour"  # the roles on the axes: box, lasso and tap selections link with the map
    y = "magnitude"

    def plot(self, data, classes):
        """``data``: one row per item with the role columns plus id, label, predicted and
        class_colour; ``classes``: class name -> colour (for a legend of your own)."""
        import holoviews as hv

        return hv.Points(data, kdims=["colour", "magnitude"],
                         vdims=["id", "label", "predicted", "class_colour"]).opts(
            color="class_colour", size=4, alpha=0.8, invert_yaxis=True,
            selection_alpha=0.8, nonselection_alpha=0.8, selection_color="class_colour",
            tools=["hover", "box_select", "lasso_select", "tap"],
            active_tools=["box_select", "wheel_zoom"],
            xlabel="colour", ylabel="magnitude (bright at the top)")
