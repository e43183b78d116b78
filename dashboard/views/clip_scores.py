import streamlit as st
st.title("clip_scores")
