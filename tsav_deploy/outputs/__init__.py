"""What results are written as: ABAW files and tables (``writers``), the plot, the overlay video,
the HTML report, and the output folder with its records."""
