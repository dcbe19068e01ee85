import plotly.graph_objects as go
import streamlit as st
import torch

import explorer as ex

st.title("Curvature Explorer")
st.markdown(
    "A visual laboratory for second-order optimization: natural gradient, "
    "Gauss-Newton, Newton, K-FAC and the empirical Fisher, side by side. "
    "This first version ships the numerical core: every problem and every curvature "
    "matrix below, exact in float64. The optimizer comparison, spectra and landscape "
    "pages are being built."
)

problem_key = st.selectbox(
    "Problem",
    list(ex.PROBLEMS),
    format_func=lambda key: ex.PROBLEMS[key].label,
    help="Every problem is an exact negative log-likelihood with its scale stated.",
)
st.caption(ex.PROBLEMS[problem_key].description)
curvatures = [key for key, spec in ex.CURVATURES.items() if spec.selectable]
curvature_key = st.selectbox(
    "Curvature matrix at the starting point",
    curvatures,
    index=curvatures.index("fisher"),
    format_func=lambda key: ex.CURVATURES[key].label,
    help="All matrices are curvatures of the mean loss (1/N convention).",
)


@st.cache_data(show_spinner="Computing the matrix…")
def dense_matrix(problem_key: str, curvature_key: str):
    problem = ex.problem(problem_key)
    operator = ex.curvature(curvature_key, problem, problem.theta0)
    return operator.dense(max_bytes=64 * 2**20).numpy(), problem.num_params


try:
    matrix, size = dense_matrix(problem_key, curvature_key)
except (ValueError, ArithmeticError) as error:
    st.warning(str(error))
else:
    scale = float(abs(matrix).max()) or 1.0
    figure = go.Figure(
        go.Heatmap(z=matrix, colorscale="RdBu", zmid=0, zmin=-scale, zmax=scale)
    )
    figure.update_layout(
        title=f"{ex.CURVATURES[curvature_key].label}, P = {size:,}",
        yaxis={"autorange": "reversed", "title": "parameter index"},
        xaxis={"title": "parameter index"},
        height=520,
    )
    st.plotly_chart(figure, width="stretch")
    eigenvalues = torch.linalg.eigvalsh(torch.from_numpy(matrix))
    st.metric(
        "Smallest / largest eigenvalue", f"{eigenvalues[0]:.3g} / {eigenvalues[-1]:.3g}"
    )
