"""regjax: the classic regularization techniques of a Keras tutorial, in pure JAX."""
