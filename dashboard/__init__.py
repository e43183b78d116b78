"""The Streamlit dashboard over the experiments (read-only): `streamlit run dashboard/app.py` or `python -m dashboard`."""
