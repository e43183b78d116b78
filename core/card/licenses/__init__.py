"""The licence texts the model card ships beside every card and export bundle (data files only; see README.md)."""
