"""The Streamlit dashboard over the experiments, read-only unless started with --review:
`streamlit run dashboard/app.py` or `python -m dashboard`."""
