import streamlit as st
st.title("token_explorer")
