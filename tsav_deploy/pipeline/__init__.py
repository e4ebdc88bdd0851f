"""The stages over one video: offline (pass 1 finds faces, pass 2 runs the network) and over a live
stream, from media to results."""
