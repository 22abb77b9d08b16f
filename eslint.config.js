import neostandard, { plugins } from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    noStyle: true,
    env: ['browser'],
    ignores: ['dist/**', 'build/**', 'node_modules/**', 'data/**', 'coverage/**'],
  }),
  {
    files: ['**/*.ts'],
    plugins: { '@typescript-eslint': plugins['typescript-eslint'].plugin },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
]
