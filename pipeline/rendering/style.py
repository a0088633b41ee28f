"""What every figure of the pipeline keeps to, so that it reads at its default size."""

#: The smallest text (points) any figure draws: titles, labels, ticks, legends, tile and cell text.
MIN_FONT_PT = 8.0
