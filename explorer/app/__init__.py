"""The widget app: state, controller and views."""
