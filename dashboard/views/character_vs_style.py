import streamlit as st
st.title("character_vs_style")
